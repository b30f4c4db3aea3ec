"""Shared config pieces: `parse_arg`, the defaults of both stages, `TINY`.

A config module exposes `get_config(arg=None)`; the text after `:` in
`--config=configs/x.py:a=1,b=two,flag` arrives as `arg` and
`parse_arg(arg, a=0, b='one', flag=False)` types it against the defaults
(a bare key sets a bool to True) and rejects unknown keys.

Config layout (what `hypercut_jax.train.loop` reads):
  stage            'ordering' | 'generator' | 'predictor' | 'both'
                   ('predictor' = the Animation-from-Blur guidance predictor,
                   fields in hypercut_jax/train/animation.py)
  seed, precision ('float32' | 'bfloat16'), sharding.fsdp
  resume           'check' (default: a rerun into a workdir trained under
                   another config stops, naming the differing fields) or
                   'override' (continue under the new config)
  prng_impl        optional: None (threefry) or 'rbg' (much faster init
                   compiles on XLA:CPU; other initial weights)
  matmul_precision optional: None (jax's default; TF32 on recent GPUs) or
                   'default' | 'high' | 'highest' (full float32 convs and
                   matmuls, as the official PyTorch code; slower on GPU)
  data             name ('synthetic'|'rb2v'|'reds'|'baist'), data_dir, subset,
                   the synthetic source's fields, and guidance=True (+
                   guidance_kwargs) to compute motion guidance from the sharp
                   frames for data that has none (zhong2022, predictor)
  keep, async_checkpoint, log_steps
  per stage (top level for one stage; in `config.ordering`,
  `config.generator` (and `config.predictor`) when stage='both'):
    model.name, model.kwargs       'hypercut' (H) or a generator name;
                                   purohit2019 also takes
                                   kwargs.middle='jin_centre'|'none' (its
                                   middle-frame net; default the full Jin
                                   centre) and kwargs.middle_kwargs={...}
                                   (JinCentre fields: features, stages,
                                   tail_features, scale)
    model.centre_checkpoint        (generator) None, or a stage-2 workdir of
                                   a jin2018 run whose trained centre net is
                                   copied into purohit2019's `centre` at init
    optim.*                        see hypercut_jax/train/optim.py
    loss.*                         ordering: form; generator: deblur,
                                   flow_weight
    hypercut.checkpoint/alpha/reg_form   (generator) frozen H
    hypercut.order_targets         (generator) the deblur loss sees each
                                   target sequence in H's order (ours;
                                   the official code keeps the stored one)
    input.batch_size/crop/eval_batch_size/eval_crop/augment/worker_count
    total_steps | total_epochs, eval_steps | eval_epochs,
    ckpt_steps | ckpt_epochs       (one of each pair; None = at the end)
    eval.lpips/num_examples/max_examples, best_metric
    eval.middle                    (generator, models taking a middle frame)
                                   'gt': evaluate with the ground-truth
                                   middle frame (the HyperCUT
                                   reimplementation's protocol) | 'estimate':
                                   with the centre net's estimate | None:
                                   'estimate' when model.centre_checkpoint is
                                   set, else 'gt'. Logged at every eval and
                                   as eval/middle_gt (1 = ground truth).
                                   Training always uses the ground truth.
"""
import ml_collections
from ml_collections import config_dict

_TRUE = ('1', 'true', 'yes', 'y', 't')
_FALSE = ('0', 'false', 'no', 'n', 'f')


def _typed(key, text, default):
  if isinstance(default, bool):
    low = text.lower()
    if low in _TRUE:
      return True
    if low in _FALSE:
      return False
    raise ValueError(f'config arg {key}={text!r}: expected a bool '
                     f'({"/".join(_TRUE)} or {"/".join(_FALSE)})')
  if isinstance(default, int):
    try:
      return int(text)
    except ValueError:
      raise ValueError(f'config arg {key}={text!r}: expected an int') from None
  if isinstance(default, float):
    try:
      return float(text)
    except ValueError:
      raise ValueError(f'config arg {key}={text!r}: expected a float') from None
  return text


def parse_arg(arg, **defaults) -> ml_collections.ConfigDict:
  """'a=1,b=x,flag' -> ConfigDict typed like `defaults`; unknown keys fail.

  A bare key (no '=') sets a bool default to True. Values take the type of
  their default (bool, int, float, str).
  """
  out = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return out
  for item in str(arg).split(','):
    item = item.strip()
    if not item:
      continue
    key, sep, text = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(f'unknown config arg {key!r} in {arg!r}; known: '
                       f'{sorted(defaults)}')
    if not sep:
      if not isinstance(defaults[key], bool):
        raise ValueError(f'config arg {key!r} needs a value ({key}=...)')
      out[key] = True
    else:
      out[key] = _typed(key, text.strip(), defaults[key])
  return out


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f'config arg {name}={value!r}; known: {list(choices)}')


def _durations(c, total_epochs=None, total_steps=None, eval_epochs=None,
               ckpt_epochs=None):
  """The duration pairs of a stage, one of each set (`loop.steps_of`)."""
  c.total_steps = config_dict.placeholder(int)
  c.total_epochs = config_dict.placeholder(float)
  c.eval_steps = config_dict.placeholder(int)
  c.eval_epochs = config_dict.placeholder(float)
  c.ckpt_steps = config_dict.placeholder(int)
  c.ckpt_epochs = config_dict.placeholder(float)
  if total_steps is not None:
    c.total_steps = total_steps
  if total_epochs is not None:
    c.total_epochs = float(total_epochs)
  if eval_epochs is not None:
    c.eval_epochs = float(eval_epochs)
  if ckpt_epochs is not None:
    c.ckpt_epochs = float(ckpt_epochs)


def input_config(batch_size=8, crop=256, eval_batch_size=8, eval_crop=None):
  c = ml_collections.ConfigDict()
  c.batch_size = batch_size
  c.crop = crop
  c.eval_batch_size = eval_batch_size
  c.eval_crop = config_dict.placeholder(int)
  if eval_crop is not None:
    c.eval_crop = eval_crop
  c.augment = ml_collections.ConfigDict()  # data.pipeline augment options
  c.worker_count = 0
  return c


def ordering_stage() -> ml_collections.ConfigDict:
  """Stage 1 with the official HyperCUT settings.

  H = ResnetIm2Vec nf=32, d=128; AdaMax (torch form) lr 5e-4, betas
  (0.9, 0.999), eps 1e-8, no weight decay; lr x0.9 every 3 epochs; batch 8,
  crop 256, 100 epochs; validation every 5 epochs; official L_h.
  """
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({'name': 'hypercut', 'kwargs': {
      'nf': 32, 'embed_dim': 128, 'n_down': 5, 'n_blocks': 6,
      'negative_slope': 1.0, 'channel_order': 'bgr'}})
  c.optim = optim_config('adamax_torch', lr=5e-4, schedule='step',
                         decay_rate=0.9, decay_every_epochs=3.0)
  c.loss = ml_collections.ConfigDict({'form': 'official'})
  c.input = input_config(batch_size=8, crop=256, eval_batch_size=8)
  _durations(c, total_epochs=100, eval_epochs=5, ckpt_epochs=5)
  c.eval = ml_collections.ConfigDict({'lpips': False, 'num_examples': 0,
                                      'max_examples': config_dict.placeholder(int)})
  c.best_metric = 'hit'
  return c


def optim_config(name, lr, schedule='constant', decay_rate=1.0,
                 decay_every_epochs=None, milestones_epochs=None, b1=0.9,
                 b2=0.999, eps=1e-8):
  c = ml_collections.ConfigDict()
  c.name = name
  c.lr = float(lr)
  c.b1 = b1
  c.b2 = b2
  c.eps = eps
  c.weight_decay = 0.0
  c.grad_clip_norm = config_dict.placeholder(float)
  c.schedule = schedule
  c.decay_rate = float(decay_rate)
  c.decay_every_steps = config_dict.placeholder(int)
  c.decay_every_epochs = config_dict.placeholder(float)
  if decay_every_epochs is not None:
    c.decay_every_epochs = float(decay_every_epochs)
  c.milestones_steps = config_dict.placeholder(tuple)
  c.milestones_epochs = config_dict.placeholder(tuple)
  if milestones_epochs is not None:
    c.milestones_epochs = tuple(milestones_epochs)
  c.final_lr_fraction = 0.0
  c.warmup_steps = 0
  return c


# Each generator paper's optimiser as recorded here. The official HyperCUT
# generator runs used their shared trainer defaults instead (AdaMax 5e-4,
# x0.9 every 3 epochs): set `optim` to `ordering_stage().optim` for those.
GENERATOR_OPTIM = {
    # Jin et al. 2018: Adam, lr 1e-4, betas (0.9, 0.999), constant.
    'jin2018': dict(name='adam', lr=1e-4, schedule='constant'),
    # Purohit et al. 2019: Adam, lr 1e-4, halved at 50% and 75% of training.
    'purohit2019': dict(name='adam', lr=1e-4, schedule='multistep',
                        decay_rate=0.5, milestones_epochs=(50.0, 75.0)),
    # Ours (models/unet.py, the CPU quick-start generator): Adam 1e-3,
    # cosine decay over the run.
    'unet': dict(name='adam', lr=1e-3, schedule='cosine'),
}
# Default model kwargs (named so `--config.model.kwargs.middle=none` works).
GENERATOR_KWARGS = {
    'jin2018': {},
    'purohit2019': {'middle': 'jin_centre'},
    'unet': {},
}
GENERATOR_LOSS = {
    'jin2018': dict(deblur='order_invariant', flow_weight=0.0),
    'purohit2019': dict(deblur='order_invariant', flow_weight=0.02),
    'unet': dict(deblur='order_invariant', flow_weight=0.0),
}


def generator_stage(model: str = 'jin2018', kwargs=None
                    ) -> ml_collections.ConfigDict:
  """Stage 2: generator `model` + alpha * R_hyp with H frozen (alpha 0.2).

  loss.space: where the deblur loss runs, 'official' (the official
  trainer's ImageNet-normalised frames, BGR-order statistics) | 'unit'
  ([0,1] frames); `hypercut_jax.train.generator.loss_space`.
  """
  check_choice('model', model, tuple(GENERATOR_OPTIM))
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({
      'name': model,
      'kwargs': dict(GENERATOR_KWARGS.get(model, {}) if kwargs is None
                     else kwargs)})
  c.model.centre_checkpoint = config_dict.placeholder(str)
  c.optim = optim_config(**GENERATOR_OPTIM[model])
  c.loss = ml_collections.ConfigDict(GENERATOR_LOSS[model])
  c.loss.space = 'official'
  c.hypercut = ml_collections.ConfigDict()
  c.hypercut.checkpoint = config_dict.placeholder(str)
  c.hypercut.alpha = 0.2
  c.hypercut.reg_form = 'official'
  c.hypercut.order_targets = False
  c.input = input_config(batch_size=8, crop=160, eval_batch_size=8)
  _durations(c, total_epochs=100, eval_epochs=5, ckpt_epochs=5)
  c.eval = ml_collections.ConfigDict({'lpips': True, 'num_examples': 4,
                                      'max_examples': config_dict.placeholder(int),
                                      'middle': config_dict.placeholder(str)})
  c.best_metric = 'ppsnr'
  return c


def base_config(stage: str, seed: int = 0) -> ml_collections.ConfigDict:
  """Fields shared by every stage."""
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.seed = seed
  c.precision = 'float32'
  c.sharding = ml_collections.ConfigDict({'fsdp': False})
  c.keep = 2
  c.async_checkpoint = True
  c.log_steps = 50
  # 'check': a rerun into a workdir trained under another config stops,
  # naming the fields; 'override': continue under the new config.
  c.resume = 'check'
  return c


def tfds_data(name: str, data_dir: str, subset=None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = name
  c.data_dir = data_dir
  c.subset = config_dict.placeholder(str)
  if subset is not None:
    c.subset = subset
  return c


def synthetic_data(seed=0, num_train=4096, num_test=128, size=(64, 64),
                   blur_space='srgb', motion_scale=1.0, max_sprites=3,
                   sub_frames=3, scenes='split') -> ml_collections.ConfigDict:
  """The embedded synthetic source (hypercut_jax.data.synthetic).

  motion_scale multiplies every motion (1: the camera moves 4-13 px over
  the exposure at 64 px); scenes: 'split' (test photos unseen in training)
  or 'shared' (both splits show all photos). See `SyntheticBlur2Vid`.
  """
  c = ml_collections.ConfigDict()
  c.name = 'synthetic'
  c.seed = seed
  c.num_train = num_train
  c.num_test = num_test
  c.size = tuple(size)
  c.blur_space = blur_space
  c.motion_scale = float(motion_scale)
  c.max_sprites = max_sprites
  c.sub_frames = sub_frames
  c.scenes = scenes
  return c


def single_stage(base, stage_cfg) -> ml_collections.ConfigDict:
  """Top-level config of a one-stage run: base fields + the stage's."""
  for key, value in stage_cfg.items():
    base[key] = value
  return base


def shrink_for_smoke(stage_cfg, *, crop: int, steps: int = 2,
                     batch_size: int = 8) -> None:
  """Tiny sizes and steps for CPU tests (`smoke`)."""
  stage_cfg.input.batch_size = batch_size
  stage_cfg.input.eval_batch_size = batch_size
  stage_cfg.input.crop = crop
  stage_cfg.total_epochs = None
  stage_cfg.total_steps = steps
  stage_cfg.eval_epochs = None
  stage_cfg.ckpt_epochs = None
  stage_cfg.eval.lpips = False
  stage_cfg.eval.max_examples = batch_size
  stage_cfg.eval.num_examples = min(stage_cfg.eval.num_examples, 2)
  if stage_cfg.optim.get('decay_every_epochs') is not None:
    stage_cfg.optim.decay_every_epochs = None
    stage_cfg.optim.decay_every_steps = max(steps, 1)
  if stage_cfg.optim.get('milestones_epochs') is not None:
    stage_cfg.optim.milestones_epochs = None
    stage_cfg.optim.milestones_steps = (max(steps // 2, 1),)


# The tiny model sizes of every config (`smoke`, reproduce's mode=tiny), by
# model name: the smallest networks that keep every part of each model.
# Configs copy an entry (`dict(TINY[name])`) and may change a field of it.
TINY = {
    # The ordering network H.
    'hypercut': dict(nf=4, embed_dim=8, n_down=5, n_blocks=1),
    'jin2018': dict(centre_features=4, centre_stages=(((1, 1),),),
                    centre_tail=4, side_features=4, deep_plain=1,
                    shallow_plain=1, side_dilated=((1, 2),), side_tail=4),
    # A one-block centre net: the full Jin centre (5M params) made the
    # init of a smoke run slow.
    'purohit2019': dict(blur_widths=(4, 4, 4, 8, 8, 8, 8),
                        flow_channels=(4, 4, 4, 8), middle='jin_centre',
                        middle_kwargs=dict(features=4, stages=(((1, 1),),),
                                           tail_features=4)),
    # Animation-from-Blur's decomposer (generator stage).
    'zhong2022': dict(features=8, max_features=16, n_blocks=1),
    'unet': dict(features=8, deep_features=8, num_blocks=1),
    # Animation-from-Blur's guidance predictor (stage 'predictor').
    'bicyclegan': dict(generator=dict(ngf=4, num_downs=5),
                       encoder=dict(nef=4, n_blocks=2),
                       discriminator=dict(ndf=8, n_layers=2, num_d=2)),
}


def dataset_config(dataset: str, arg, subset=None) -> ml_collections.ConfigDict:
  """One-stage config for a TFDS dataset from parsed args.

  arg: stage ('ordering' | 'generator'), model, data_dir, smoke, seed.
  """
  import os  # pylint: disable=g-import-not-at-top
  check_choice('stage', arg.stage, ('ordering', 'generator'))
  check_choice('model', arg.model, tuple(GENERATOR_OPTIM))
  c = base_config(arg.stage, seed=arg.seed)
  c.data = tfds_data(dataset, os.path.expanduser(arg.data_dir), subset)
  stage = ordering_stage() if arg.stage == 'ordering' else generator_stage(arg.model)
  if arg.smoke:
    c.log_steps = 1
    c.keep = 1
    crop = 33 if arg.stage == 'ordering' else 40
    shrink_for_smoke(stage, crop=crop, steps=2, batch_size=2)
    stage.input.eval_crop = crop
    if arg.stage == 'ordering':
      stage.model.kwargs = dict(TINY['hypercut'])
    else:
      stage.model.kwargs = dict(TINY[arg.model])
  return single_stage(c, stage)
