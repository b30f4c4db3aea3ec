r"""The runs of the paper reproduction (`python -m hypercut_jax.reproduce`).

One config per run, each a one-stage config for `hypercut_jax.train.loop`:

  h                         stage 1: the ordering network H
  jin2018_naive             Jin et al. 2018, naive loss (Charbonnier, official)
  jin2018_oi                Jin et al. 2018, order-invariant loss (baseline)
  jin2018_oi_hypercut       ... + alpha * R_hyp with the frozen H (ours)
  purohit2019_naive         Purohit et al. 2019, naive loss
  purohit2019_oi            Purohit et al. 2019, order-invariant loss
  purohit2019_oi_hypercut   ... + alpha * R_hyp
  afb_predictor             Animation-from-Blur (Zhong et al. 2022): the
                            BicycleGAN guidance predictor
  afb                       its guided decomposer (MSE loss)
  afb_hypercut              ... + alpha * R_hyp
                            (the decomposers train with the ground-truth
                            motion guidance, computed from the sharp frames
                            for data without it; their in-loop evaluation
                            adds P1/P3/P5 with guidance sampled from
                            `afb_predictor`)

Args (after ':'):
  run=<name>          one of the names above (default h)
  mode=cpu|tiny|paper cpu: the embedded synthetic data at a size a quiet
                      2-core CPU trains in about 90 minutes for all runs; tiny:
                      a few steps of tiny models (tests); paper: the paper's
                      settings (`configs/common.py` stages) for real data
  dataset=synthetic|reds|baist|rb2v, data_dir=<prepared TFDS dir>,
  subset=<rb2v config: street|face|hand>
  seed=<int>          model init, data order and synthetic records
  h_checkpoint=<dir>  the `h` run's workdir, for the + HyperCUT runs
  predictor_checkpoint=<dir>  the `afb_predictor` run's workdir, for the
                      decomposer runs' P_n (the reproduce script fills both
                      in)

Run one by hand (the script does this for every run, in order):
  python -m hypercut_jax.main --config=configs/reproduce.py:run=h,mode=cpu \
      --workdir=W/h
  python -m hypercut_jax.main \
      --config=configs/reproduce.py:run=jin2018_oi_hypercut,mode=cpu,h_checkpoint=W/h \
      --workdir=W/jin2018_oi_hypercut
"""
import os

from hypercut_jax.configs import baist  # the Animation-from-Blur stages
from hypercut_jax.configs import common

# name -> (stage, generator model, deblur loss, uses H). Naive = the
# official Charbonnier loss (docs/divergences.md).
RUN_SPECS = {
    'h': ('ordering', None, None, False),
    'jin2018_naive': ('generator', 'jin2018', 'charbonnier', False),
    'jin2018_oi': ('generator', 'jin2018', 'order_invariant', False),
    'jin2018_oi_hypercut': ('generator', 'jin2018', 'order_invariant', True),
    'purohit2019_naive': ('generator', 'purohit2019', 'charbonnier', False),
    'purohit2019_oi': ('generator', 'purohit2019', 'order_invariant', False),
    'purohit2019_oi_hypercut': ('generator', 'purohit2019', 'order_invariant',
                                True),
    'afb_predictor': ('predictor', 'zhong2022', None, False),
    'afb': ('generator', 'zhong2022', 'mse', False),
    'afb_hypercut': ('generator', 'zhong2022', 'mse', True),
}
BASE_RUNS = ('h', 'jin2018_naive', 'jin2018_oi', 'jin2018_oi_hypercut',
             'purohit2019_naive', 'purohit2019_oi', 'purohit2019_oi_hypercut')
AFB_RUNS = ('afb_predictor', 'afb', 'afb_hypercut')
MODES = ('cpu', 'tiny', 'paper')
DATASETS = ('synthetic', 'reds', 'baist', 'rb2v')
ALPHA = 0.2  # the official weight of R_hyp
AFB_ENABLED = True

# ----------------------------------------------------------- mode=cpu sizes ---
# Synthetic records of 64x64 (the test split is evaluated at full size).
CPU_DATA = dict(num_train=4096, num_test=128, size=(64, 64))
# A narrow H with the paper's LeakyReLU(0.2): the official slope 1.0 makes
# stem + downsampling one affine map and learns far slower at this budget.
CPU_H = dict(nf=16, embed_dim=64, n_down=5, n_blocks=2, negative_slope=0.2,
             channel_order='bgr')
CPU_H_STEPS = 2000
# A narrow Jin cascade with every network of the full topology.
CPU_JIN = dict(
    centre_features=16,
    centre_stages=(((1, 1),), ((1, 2), (2, 4)), ((4, 2), (2, 1)), ((1, 1),)),
    centre_tail=8, side_features=12, deep_plain=1, shallow_plain=1,
    side_dilated=((1, 2), (2, 1)), side_tail=8)
# A narrow Purohit network; trained (as in the HyperCUT reimplementation)
# and evaluated with the ground-truth middle frame, so no centre net.
CPU_PUROHIT = dict(blur_widths=(16, 16, 16, 32, 32, 32, 32),
                   flow_channels=(8, 16, 16, 32), middle='none')
# Steps per generator. Jin's + HyperCUT run trails its baseline early on
# (R_hyp dominates the first ~100 steps) and catches up with training: its
# outer-frame deficit shrank from -1.5 dB at 300 steps to -0.14 dB at 2400
# and turned into a small gain at 3600 (32 test examples), so Jin trains 3600.
CPU_GEN_STEPS = {'jin2018': 3600, 'purohit2019': 600, 'zhong2022': 600}
# Animation-from-Blur at a small width (as configs/synthetic_afb.py).
CPU_AFB_PREDICTOR = dict(generator=dict(ngf=8, num_downs=5),
                         encoder=dict(nef=8, n_blocks=3),
                         discriminator=dict(ndf=16, n_layers=2, num_d=2))
CPU_AFB_DECOMPOSER = dict(features=16, max_features=32, n_blocks=2)
CPU_AFB_PREDICTOR_STEPS = 300
GUIDANCE_KWARGS = {'downsample': 2}
CPU_CROP = {'jin2018': 40, 'purohit2019': 40, 'zhong2022': 40}
CPU_LR = {'jin2018': 1e-3, 'purohit2019': 1e-3, 'zhong2022': 1e-3}

# ---------------------------------------------------------- mode=tiny sizes ---
# The tiny networks of common.TINY; H with the paper's LeakyReLU(0.2) as in
# mode=cpu, and Purohit without its centre net (as in mode=cpu).
TINY_H = dict(common.TINY['hypercut'], negative_slope=0.2)
TINY_MODEL = {
    'jin2018': dict(common.TINY['jin2018']),
    'purohit2019': dict({k: v for k, v in common.TINY['purohit2019'].items()
                         if k != 'middle_kwargs'}, middle='none'),
}
TINY_CROP = {'jin2018': 40, 'purohit2019': 40, 'zhong2022': 40}


def run_names(afb: bool = False) -> tuple[str, ...]:
  """The runs in the order they train (AfB last: needs the zhong2022 model)."""
  return BASE_RUNS + (AFB_RUNS if afb else ())


def _ordering(mode: str):
  h = common.ordering_stage()
  if mode == 'paper':
    return h
  h.total_epochs = None
  h.eval_epochs = None
  h.ckpt_epochs = None
  h.optim.decay_every_epochs = None
  if mode == 'cpu':
    h.model.kwargs = dict(CPU_H)
    h.optim.lr = 2e-3
    h.optim.decay_rate = 0.8
    h.optim.decay_every_steps = 250
    h.input.crop = 40
    h.input.batch_size = 8
    h.input.eval_batch_size = 32
    h.total_steps = CPU_H_STEPS
    h.ckpt_steps = 250
  else:
    h.model.kwargs = dict(TINY_H)
    h.optim.decay_every_steps = 2
    h.input.crop = 33
    h.input.batch_size = 8
    h.input.eval_batch_size = 8
    h.total_steps = 3
  return h


def _generator(mode: str, model: str, deblur: str, use_h: bool, h_dir: str):
  g = common.generator_stage(model)
  g.loss.deblur = deblur
  g.hypercut.alpha = ALPHA if use_h else 0.0
  if use_h and h_dir:
    g.hypercut.checkpoint = h_dir
  if mode == 'paper':
    return g
  g.total_epochs = None
  g.eval_epochs = None
  g.ckpt_epochs = None
  g.optim.decay_every_epochs = None
  g.optim.milestones_epochs = None
  g.eval.lpips = False         # the report step evaluates with LPIPS
  g.eval.num_examples = 0
  if mode == 'cpu':
    g.model.kwargs = dict({'jin2018': CPU_JIN,
                           'purohit2019': CPU_PUROHIT}[model])
    g.optim.lr = CPU_LR[model]
    if g.optim.schedule == 'multistep':
      steps = CPU_GEN_STEPS[model]
      g.optim.milestones_steps = (steps // 2, steps * 3 // 4)
    g.input.crop = CPU_CROP[model]
    g.input.batch_size = 8
    g.input.eval_batch_size = 16
    g.total_steps = CPU_GEN_STEPS[model]
    g.ckpt_steps = 200
    g.eval.max_examples = 32
  else:
    g.model.kwargs = dict(TINY_MODEL[model])
    if g.optim.schedule == 'multistep':
      g.optim.milestones_steps = (1,)
    g.input.crop = TINY_CROP[model]
    g.input.batch_size = 8
    g.input.eval_batch_size = 8
    g.total_steps = 2
    g.eval.max_examples = 8
  return g


def _afb_predictor(mode: str):
  p = baist.predictor_stage(CPU_AFB_PREDICTOR if mode == 'cpu' else None)
  if mode == 'paper':
    return p
  p.input.augment.reverse_time = False   # synthetic records are random already
  if mode == 'cpu':
    p.input.batch_size = 8
    p.input.eval_batch_size = 16
    p.input.crop = 32
    p.input.eval_crop = (64, 64)
    p.optim.linear_decay_epochs = None
    p.optim.linear_decay_steps = CPU_AFB_PREDICTOR_STEPS // 2
    p.total_epochs = None
    p.total_steps = CPU_AFB_PREDICTOR_STEPS
    p.eval_epochs = None
    p.ckpt_epochs = None
    p.ckpt_steps = 100
  else:
    p.model.kwargs = dict(common.TINY['bicyclegan'])
    baist.shrink(p, crop=32, eval_crop=(32, 32), batch_size=8)
  return p


def _afb_decomposer(mode: str, use_h: bool, h_dir: str, predictor_dir: str):
  g = baist.decomposer_stage(CPU_AFB_DECOMPOSER if mode == 'cpu' else None)
  g.hypercut.alpha = ALPHA if use_h else 0.0
  if use_h and h_dir:
    g.hypercut.checkpoint = h_dir
  if predictor_dir:
    g.eval.predictor_checkpoint = predictor_dir
  if mode == 'paper':
    return g
  g.input.augment.reverse_time = False
  g.eval.lpips = False         # the report step evaluates with LPIPS
  g.eval.num_examples = 0
  if mode == 'cpu':
    g.optim.lr = CPU_LR['zhong2022']
    g.input.batch_size = 8
    g.input.eval_batch_size = 16
    g.input.crop = CPU_CROP['zhong2022']
    g.input.eval_crop = (64, 64)
    g.total_epochs = None
    g.total_steps = CPU_GEN_STEPS['zhong2022']
    g.eval_epochs = None
    g.ckpt_epochs = None
    g.ckpt_steps = 200
  else:
    g.model.kwargs = dict(common.TINY['zhong2022'])
    baist.shrink(g, crop=TINY_CROP['zhong2022'], eval_crop=(40, 40),
                 batch_size=8)
    g.eval.p_n = (1, 2)
  return g


def get_config(arg=None):
  arg = common.parse_arg(arg, run='h', mode='cpu', seed=0, dataset='synthetic',
                         data_dir='', subset='', h_checkpoint='',
                         predictor_checkpoint='')
  common.check_choice('run', arg.run, tuple(RUN_SPECS))
  common.check_choice('mode', arg.mode, MODES)
  common.check_choice('dataset', arg.dataset, DATASETS)
  if arg.dataset == 'synthetic' and arg.mode == 'paper':
    raise ValueError("config arg mode='paper' needs a real dataset "
                     f'(dataset= one of {list(DATASETS[1:])}); use mode=cpu '
                     'or mode=tiny for the synthetic data')
  if arg.dataset != 'synthetic' and arg.mode == 'cpu':
    raise ValueError(f'config arg mode=cpu is the synthetic CPU budget; '
                     f'dataset={arg.dataset!r} takes mode=paper (or tiny)')
  if arg.dataset != 'synthetic' and not arg.data_dir:
    raise ValueError(f'config arg dataset={arg.dataset!r} needs '
                     'data_dir=<prepared TFDS dir>')
  stage, model, deblur, use_h = RUN_SPECS[arg.run]

  c = common.base_config(stage, seed=arg.seed)
  if arg.dataset == 'synthetic':
    c.data = common.synthetic_data(seed=arg.seed, **CPU_DATA)
    if arg.mode == 'tiny':
      c.data.num_train, c.data.num_test, c.data.size = 64, 8, (40, 40)
  else:
    c.data = common.tfds_data(arg.dataset, os.path.expanduser(arg.data_dir),
                              arg.subset or None)
  if arg.mode == 'cpu':
    c.log_steps = 50
  elif arg.mode == 'tiny':
    c.log_steps = 1
    c.keep = 1
    c.prng_impl = 'rbg'          # shorter XLA:CPU compiles (tests)
  h_dir = os.path.expanduser(arg.h_checkpoint)
  if model == 'zhong2022':
    if arg.dataset != 'baist':   # guidance from the sharp frames
      c.data.guidance = True
      c.data.guidance_kwargs = dict(GUIDANCE_KWARGS)
    if arg.mode != 'paper':
      c.prng_impl = 'rbg'        # shorter XLA:CPU compiles
    if stage == 'predictor':
      stage_cfg = _afb_predictor(arg.mode)
    else:
      stage_cfg = _afb_decomposer(
          arg.mode, use_h, h_dir,
          os.path.expanduser(arg.predictor_checkpoint))
  elif stage == 'ordering':
    stage_cfg = _ordering(arg.mode)
  else:
    stage_cfg = _generator(arg.mode, model, deblur, use_h, h_dir)
  return common.single_stage(c, stage_cfg)
