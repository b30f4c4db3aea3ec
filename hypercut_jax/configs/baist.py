r"""B-Aist++ (dancers; 73 train / 32 test videos; motion guidance included).

Prepare the TFDS data once (see datasets/baist/README.md), then

  python -m hypercut_jax.main --config=configs/baist.py \
      --workdir=/tmp/baist_h --config.data.data_dir=$HOME/tensorflow_datasets
  python -m hypercut_jax.main \
      --config=configs/baist.py:stage=generator,model=purohit2019 \
      --workdir=/tmp/baist_purohit --config.hypercut.checkpoint=/tmp/baist_h

Animation-from-Blur (Zhong et al. 2022): the guidance predictor, the
decomposer ("[3]"), and the decomposer + HyperCUT ("[3] + HyperCUT"),
evaluated as P1/P3/P5 with the predictor:

  python -m hypercut_jax.main --config=configs/baist.py:stage=predictor \
      --workdir=/tmp/baist_pred
  python -m hypercut_jax.main \
      --config=configs/baist.py:stage=generator,model=zhong2022 \
      --workdir=/tmp/baist_afb --config.eval.predictor_checkpoint=/tmp/baist_pred
  python -m hypercut_jax.main \
      --config=configs/baist.py:stage=generator,model=zhong2022,alpha=0.2 \
      --workdir=/tmp/baist_afb_hc --config.hypercut.checkpoint=/tmp/baist_h \
      --config.eval.predictor_checkpoint=/tmp/baist_pred

Args: stage=ordering|generator|predictor, model=jin2018|purohit2019|zhong2022,
alpha=<R_hyp weight> (default: 0.2 for jin2018/purohit2019, 0 for
zhong2022; R_hyp needs --config.hypercut.checkpoint), data_dir=<prepared
TFDS dir>, smoke (tiny sizes and 2 steps for CPU tests), seed.
Batches carry the dataset's `guidance` map (ground truth, used by zhong2022
in training and, without a predictor, at evaluation); other generators
ignore it.

Settings: H and jin2018/purohit2019 as configs/rb2v.py (official H settings;
generators with alpha=0.2 and each paper's optimiser). Animation-from-Blur
follows the authors' `mbd_2s_residual.yaml` (decomposer) and
`cvaegan_gumble_celoss_z4.yaml` (predictor):
  decomposer: two stages, 128 -> 256/512, 12 residual blocks, sigmoid
    outputs, stage 2 residual; MSE summed over both stages; 400 epochs,
    batch 2 (the authors' per-process `train_batch_size`; their GPU count is
    not recorded: a guess), training crop 192x192, test crop (H, W) =
    (192, 160); left-right flip and time reversal (their Reverse; Rot90 is
    not offered here); Adam lr 1e-4 cosine-annealed to 1e-6 over training.
    The authors use AdamW with decoupled weight decay 1e-4; optim.py has
    torch-style L2 only, so weight decay is left at 0 (a divergence).
    Their crops are taken near the dancer's bounding box
    (NearBBoxResizedSafeCrop, up to 10% resize); ours are uniform random
    crops. Normalisation: InstanceNorm (the authors' BatchNorm needs batch
    statistics; see models/zhong2022.py). No colour jitter (authors: none).
  predictor: BicycleGAN unet_256 G (nz 4), resnet_256 E, two-scale
    PatchGAN D shared by both branches; lambda_CE 10, lambda_GAN 1,
    lambda_GAN2 1, lambda_kl 0.01, lambda_L1 0, lambda_z 0; Adam lr 2e-4,
    betas (0.5, 0.999), constant for 100 epochs then linear to 0 over 100
    more (`optim.linear_decay_epochs`); batch 2; crop 256 for training and
    evaluation (their valid crop); flip + time reversal. Evaluation
    samples 5 latents per test image.
  Evaluation of the decomposer: P1/P3/P5 pPSNR/pSSIM/pLPIPS with the
  predictor named by `eval.predictor_checkpoint` (fixed keys from
  `eval.seed`); the ground-truth guidance metrics are reported as well.
"""
import os

from ml_collections import config_dict
import ml_collections

from hypercut_jax.configs import common

DATASET = 'baist'
MODELS = ('jin2018', 'purohit2019', 'zhong2022')


def _input(batch_size, crop, eval_batch_size, eval_crop):
  """input_config whose eval_crop may be an int or an (H, W) pair."""
  c = common.input_config(batch_size=batch_size, crop=crop,
                          eval_batch_size=eval_batch_size)
  out = ml_collections.ConfigDict({k: v for k, v in c.items()
                                   if k != 'eval_crop'})
  out.eval_crop = eval_crop
  out.augment = ml_collections.ConfigDict(dict(
      hflip=True, reverse_time=True, brightness=0.0, contrast=0.0,
      saturation=0.0))
  return out


def _durations(c, total_epochs, eval_epochs, ckpt_epochs):
  c.total_steps = config_dict.placeholder(int)
  c.total_epochs = float(total_epochs)
  c.eval_steps = config_dict.placeholder(int)
  c.eval_epochs = float(eval_epochs)
  c.ckpt_steps = config_dict.placeholder(int)
  c.ckpt_epochs = float(ckpt_epochs)


def decomposer_stage(kwargs=None) -> ml_collections.ConfigDict:
  """Generator stage for Animation-from-Blur's decomposer (authors' settings)."""
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({'name': 'zhong2022',
                                       'kwargs': dict(kwargs or {})})
  c.optim = common.optim_config('adam', lr=1e-4, schedule='cosine')
  c.optim.final_lr_fraction = 1e-6 / 1e-4
  c.loss = ml_collections.ConfigDict({'deblur': 'mse', 'flow_weight': 0.0,
                                      'space': 'official'})
  c.hypercut = ml_collections.ConfigDict()
  c.hypercut.checkpoint = config_dict.placeholder(str)
  c.hypercut.alpha = 0.0
  c.hypercut.reg_form = 'official'
  c.input = _input(batch_size=2, crop=192, eval_batch_size=2,
                   eval_crop=(192, 160))
  _durations(c, total_epochs=400, eval_epochs=10, ckpt_epochs=5)
  c.eval = ml_collections.ConfigDict({
      'lpips': True, 'num_examples': 4,
      'max_examples': config_dict.placeholder(int),
      'predictor_checkpoint': config_dict.placeholder(str),
      'p_n': (1, 3, 5), 'seed': 0})
  c.best_metric = 'ppsnr'
  return c


def predictor_stage(kwargs=None) -> ml_collections.ConfigDict:
  """Stage 'predictor': BicycleGAN guidance predictor (authors' settings)."""
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({'name': 'bicyclegan',
                                       'kwargs': dict(kwargs or {})})
  c.optim = common.optim_config('adam', lr=2e-4, b1=0.5, b2=0.999)
  c.optim.linear_decay_steps = config_dict.placeholder(int)
  c.optim.linear_decay_epochs = config_dict.placeholder(float)
  c.optim.linear_decay_epochs = 100.0
  c.loss = ml_collections.ConfigDict(dict(
      lambda_ce=10.0, lambda_gan=1.0, lambda_gan2=1.0, lambda_kl=0.01,
      lambda_l1=0.0, lambda_z=0.0, tau=1.0))
  c.input = _input(batch_size=2, crop=256, eval_batch_size=2,
                   eval_crop=(256, 256))
  _durations(c, total_epochs=200, eval_epochs=10, ckpt_epochs=5)
  c.eval = ml_collections.ConfigDict({
      'samples': 5, 'seed': 0, 'max_examples': config_dict.placeholder(int)})
  c.best_metric = 'acc_sample'
  return c


def shrink(stage_cfg, *, crop, eval_crop, steps=2, batch_size=2) -> None:
  """CPU sizes for `smoke` (2 steps, tiny crops, no LPIPS)."""
  stage_cfg.input.batch_size = batch_size
  stage_cfg.input.eval_batch_size = batch_size
  stage_cfg.input.crop = crop
  stage_cfg.input.eval_crop = eval_crop
  stage_cfg.total_epochs = None
  stage_cfg.total_steps = steps
  stage_cfg.eval_epochs = None
  stage_cfg.ckpt_epochs = None
  stage_cfg.eval.max_examples = batch_size
  if 'lpips' in stage_cfg.eval:
    stage_cfg.eval.lpips = False
    stage_cfg.eval.num_examples = min(stage_cfg.eval.num_examples, 2)
  if 'samples' in stage_cfg.eval:
    stage_cfg.eval.samples = 2
  if stage_cfg.optim.get('linear_decay_epochs') is not None:
    stage_cfg.optim.linear_decay_epochs = None
    stage_cfg.optim.linear_decay_steps = max(steps // 2, 1)


def get_config(arg=None):
  arg = common.parse_arg(arg, stage='ordering', model='jin2018',
                         data_dir='~/tensorflow_datasets', smoke=False, seed=0,
                         alpha=-1.0)
  common.check_choice('stage', arg.stage, ('ordering', 'generator', 'predictor'))
  common.check_choice('model', arg.model, MODELS)
  if arg.stage == 'ordering' or (arg.stage == 'generator'
                                 and arg.model != 'zhong2022'):
    c = common.dataset_config(DATASET, arg, subset=None)
    if arg.stage == 'generator' and arg.alpha >= 0:
      c.hypercut.alpha = arg.alpha
    return c
  c = common.base_config(arg.stage, seed=arg.seed)
  c.data = common.tfds_data(DATASET, os.path.expanduser(arg.data_dir))
  if arg.stage == 'predictor':
    stage = predictor_stage()
    if arg.smoke:
      stage.model.kwargs = dict(common.TINY['bicyclegan'])
      shrink(stage, crop=32, eval_crop=(32, 32))
  else:
    stage = decomposer_stage()
    stage.hypercut.alpha = max(arg.alpha, 0.0)
    if arg.smoke:
      stage.model.kwargs = dict(common.TINY['zhong2022'])
      shrink(stage, crop=40, eval_crop=(40, 48))   # dummy images: 40x48
  if arg.smoke:
    c.log_steps = 1
    c.keep = 1
    c.prng_impl = 'rbg'   # XLA:CPU compiles threefry inits slowly
  return common.single_stage(c, stage)
