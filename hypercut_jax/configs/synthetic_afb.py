r"""Animation-from-Blur (+ HyperCUT) on the embedded synthetic data, CPU-sized.

The whole chain, H -> guidance predictor -> decomposer + 0.2 R_hyp under
the frozen H, evaluated with P1/P3/P5 from the predictor:

  python -m hypercut_jax.main --config=configs/synthetic_afb.py \
      --workdir=/tmp/afb_synthetic

writes `ordering/`, `predictor/`, `generator/` and `results.md` in the
workdir. One stage at a time (each workdir resumes on rerun):

  python -m hypercut_jax.main \
      --config=configs/synthetic_afb.py:stage=ordering --workdir=/tmp/afb_h
  python -m hypercut_jax.main \
      --config=configs/synthetic_afb.py:stage=predictor --workdir=/tmp/afb_pred
  python -m hypercut_jax.main \
      --config=configs/synthetic_afb.py:stage=generator --workdir=/tmp/afb_dec \
      --config.hypercut.checkpoint=/tmp/afb_h \
      --config.eval.predictor_checkpoint=/tmp/afb_pred

(`alpha=0` gives the decomposer alone, "[3]"; without
`--config.hypercut.checkpoint` the generator stage has no R_hyp either.)

Data: 48x48 synthetic sequences (camera + sprite motion over scikit-image
photographs) with motion guidance computed from the sharp frames
(`data.guidance=True`, block matching at half resolution). Networks: the
narrow H of configs/synthetic.py; a predictor with G ngf 8 and 5 levels
(32 px multiple), E nef 8, D ndf 16 (2 layers, 2 scales); a decomposer with
16 -> 32 channels and 2 residual blocks per stage; the authors' optimisers
with a 10x higher predictor learning rate (2e-3) and Adam 1e-3 for the
decomposer. About 4 CPU-minutes in all (9 minutes of wall time on a shared,
loaded 2-core machine); prng_impl 'rbg' keeps XLA:CPU compiles short. At
this budget the numbers only show that every piece runs and learns.

Args (after ':'): stage=all|ordering|predictor|generator, alpha=<R_hyp
weight, default 0.2>, smoke (tiny sizes, 2 steps each, for tests), seed.
  python -m hypercut_jax.main --config=configs/synthetic_afb.py:smoke --workdir=W
"""
from hypercut_jax.configs import baist  # the Animation-from-Blur stages
from hypercut_jax.configs import common

PREDICTOR_NARROW = dict(generator=dict(ngf=8, num_downs=5),
                        encoder=dict(nef=8, n_blocks=3),
                        discriminator=dict(ndf=16, n_layers=2, num_d=2))
DECOMPOSER_NARROW = dict(features=16, max_features=32, n_blocks=2)
H_NARROW = dict(nf=16, embed_dim=64, n_down=5, n_blocks=2,
                negative_slope=0.2, channel_order='bgr')


def _steps(c, total, ckpt):
  c.total_epochs = None
  c.total_steps = total
  c.eval_epochs = None
  c.ckpt_epochs = None
  c.ckpt_steps = ckpt


def get_config(arg=None):
  arg = common.parse_arg(arg, smoke=False, stage='all', seed=0, alpha=0.2)
  common.check_choice('stage', arg.stage,
                      ('all', 'ordering', 'predictor', 'generator'))
  c = common.base_config('both' if arg.stage == 'all' else arg.stage,
                         seed=arg.seed)
  c.prng_impl = 'rbg'
  c.log_steps = 25
  c.data = common.synthetic_data(seed=arg.seed, num_train=512, num_test=32,
                                 size=(48, 48))
  c.data.guidance = True
  c.data.guidance_kwargs = {'downsample': 2}

  h = common.ordering_stage()
  h.model.kwargs = dict(H_NARROW)
  h.optim.lr = 2e-3
  h.optim.decay_every_epochs = None
  h.optim.decay_every_steps = 100
  h.input.crop = 40
  h.input.eval_crop = 40
  h.input.eval_batch_size = 16
  _steps(h, 300, 100)

  p = baist.predictor_stage(PREDICTOR_NARROW)
  p.optim.lr = 2e-3   # the authors' 2e-4 barely moves a narrow G in 300 steps
  p.input.batch_size = 8
  p.input.eval_batch_size = 16
  p.input.crop = 32
  p.input.eval_crop = (48, 48)
  p.input.augment.reverse_time = False
  p.optim.linear_decay_epochs = None
  p.optim.linear_decay_steps = 150
  _steps(p, 300, 100)

  g = baist.decomposer_stage(DECOMPOSER_NARROW)
  g.optim.lr = 1e-3
  g.input.batch_size = 8
  g.input.eval_batch_size = 16
  g.input.crop = 40
  g.input.eval_crop = (48, 48)
  g.input.augment.reverse_time = False
  g.hypercut.alpha = arg.alpha
  _steps(g, 200, 100)

  if arg.smoke:
    c.log_steps = 1
    c.keep = 1
    c.data.num_train = 16
    c.data.num_test = 4
    c.data.size = (40, 40)
    common.shrink_for_smoke(h, crop=33, steps=2)
    h.model.kwargs = dict(common.TINY['hypercut'])
    h.input.eval_crop = 33
    p.model.kwargs = dict(common.TINY['bicyclegan'])
    baist.shrink(p, crop=32, eval_crop=(32, 32), batch_size=8)
    g.model.kwargs = dict(common.TINY['zhong2022'])
    baist.shrink(g, crop=36, eval_crop=(40, 36), batch_size=8)

  if arg.stage == 'all':
    c.ordering, c.predictor, c.generator = h, p, g
  else:
    common.single_stage(c, {'ordering': h, 'predictor': p,
                            'generator': g}[arg.stage])
  return c
