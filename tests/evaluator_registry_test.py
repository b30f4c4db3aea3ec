"""A new evaluator is one module plus one config line (`config.eval.extra`).

This file is that module: `MeanBlur` (by 'module:Class') and `CountExamples`
(registered by name) run beside the stage's own evaluator in a real
`loop.run`, and their metrics reach `metrics.jsonl` as 'eval/<name>'.
"""
import json

import numpy as np
import pytest

from hypercut_jax.train import evaluators
from hypercut_jax.train import loop
import checkpoint_test  # the one-stage H config


class MeanBlur:
  """Mean blurry pixel of the real eval examples, times `scale`."""

  def __init__(self, *, batches_fn, mesh, config, scale=1.0):
    del mesh, config
    self.batches_fn = batches_fn
    self.scale = float(scale)

  def run(self, state):
    del state
    total = count = 0.0
    for batch in self.batches_fn():
      mask = np.asarray(batch.get('mask', np.ones(len(batch['blur']), bool)))
      blur = np.asarray(batch['blur'], np.float64)[mask] / 255.0
      total += blur.sum()
      count += blur.size
    return {'toy/mean_blur': self.scale * total / count}


@evaluators.register('toy_count')
class CountExamples:
  """How many real eval examples, and the step of the evaluated state."""

  def __init__(self, *, batches_fn, mesh, config):
    del mesh, config
    self.batches_fn = batches_fn

  def run(self, state):
    n = sum(int(np.sum(b.get('mask', np.ones(len(b['blur']), bool))))
            for b in self.batches_fn())
    return {'toy/n': float(n), 'toy/step': float(state.step)}


def test_toy_evaluators_from_a_config_line(tmp_path):
  cfg = checkpoint_test._stage_config(  # pylint: disable=protected-access
      total_steps=2, ckpt_steps=2, async_checkpoint=False)
  cfg.eval.extra = [{'name': 'evaluator_registry_test:MeanBlur', 'scale': 2.0},
                    {'name': 'toy_count'}]
  out = loop.run(cfg, str(tmp_path))
  metrics = out['ordering'].metrics
  assert metrics['eval/toy/n'] == 8.0 and metrics['eval/toy/step'] == 2.0
  assert 0.0 < metrics['eval/toy/mean_blur'] < 2.0
  assert 'eval/hit' in metrics   # the stage's own evaluator still runs
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [r['eval/toy/n'] for r in rows if 'eval/toy/n' in r] == [8.0]


@pytest.mark.parametrize('extra,message', [
    ([{'name': 'no_such'}], r"eval.extra\[0\]: evaluator 'no_such': not a "
                            'registered name'),
    ([{'name': 'no_such_module:X'}], r'eval.extra\[0\].*cannot be imported'),
    ([{'scale': 1}], r'eval.extra\[0\]=.*expected'),
    ('toy_count', r'eval.extra=.*expected a list'),
])
def test_bad_entries_are_named_before_anything_runs(extra, message):
  cfg = checkpoint_test._stage_config()  # pylint: disable=protected-access
  cfg.eval.extra = extra
  with pytest.raises(ValueError, match=message):
    loop.validate(cfg)


def test_a_name_registers_once():
  with pytest.raises(ValueError, match='already registered'):
    evaluators.register('toy_count')(MeanBlur)
