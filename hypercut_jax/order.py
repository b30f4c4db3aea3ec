r"""Which way does H order a clip? Scores of its frame pairs and their swaps.

  python -m hypercut_jax.order --checkpoint=/tmp/hc/ordering --frames=clip/
  python -m hypercut_jax.order --checkpoint=/tmp/h_street --frames=clips/

--checkpoint  an ordering-stage (stage 1) workdir, its checkpoints/ or a
              step directory, a `stage=both` workdir, or the output of
              `python -m hypercut_jax.convert` (official weights).
--frames      one clip: a directory of 7 frames, or a quoted glob matching 7
              files; several clips: a directory of clip directories (or a
              glob matching directories). Frames are taken in sorted
              filename order (name them so that sorting gives time order:
              0.png .. 6.png, frame_01.png ..); hidden files are ignored.
--rule        how the direction is decided: `first` (default, official):
              the sign of u_0, the score of the outermost pair (x_0, x_6),
              as in the official hit metric and order generation;
              `majority`: the sign held by most of u_0, u_1, u_2.
--format      `text` (default) or `json` (one JSON object per clip a line).

For each clip and each pair k = 0, 1, 2 of frames (k, 6-k) it prints
u_k = s([x_k, x_{6-k}]) and v_k = s([x_{6-k}, x_k]), where
s = <H(pair), w[:D]> + w[D] * sum(H(pair)) with the checkpoint's fixed
hyperplane w. The clip's direction is the side (`+` or `-`) of the rule's
score; a score of exactly 0 is `0` (undecided). The reversed clip has the
pairs swapped, so its scores are the v_k and its direction is read the same
way from them: a well-trained H puts it on the other side ("reversed clip
opposite: yes"). The side is a convention of the trained H: the generator
stage's R_hyp drives predicted frame sequences to the `-` side, so `-` is
the order generators trained with this H output.

H needs frames of at least 2**n_down + 1 px a side (33 for the official
network); all 7 frames of a clip must have one size. Frames are read by
`hypercut_jax.imageio` (8/16-bit PNG, JPEG, grayscale, RGBA with alpha
dropped). A bad clip (missing or extra frames, unreadable frame, size) is
reported in one line; with several clips the others still run. Scores are
checked before they are printed: NaN or inf (a diverged H or hyperplane)
stops the run with one line naming the clip and the checkpoint
(`NonFiniteScoreError`); clips printed before it stand. Exit status: 0 when
every clip was scored, 1 otherwise.
"""
import argparse
import dataclasses
import glob
import json
import os
import sys

import numpy as np

from hypercut_jax import imageio
from hypercut_jax.models import ordering

N_FRAMES = 7
PAIRS = ((0, 6), (1, 5), (2, 4))
RULES = ('first', 'majority')


@dataclasses.dataclass
class ClipResult:
  """Scores of one clip. u, v: f32[3] (pairs (0,6),(1,5),(2,4))."""
  clip: str
  frames: list
  size: tuple
  u: np.ndarray
  v: np.ndarray
  rule: str

  @property
  def direction(self) -> str:
    return side(self.u, self.rule)

  @property
  def reversed_direction(self) -> str:
    return side(self.v, self.rule)

  @property
  def opposite(self) -> bool:
    return {self.direction, self.reversed_direction} == {'+', '-'}

  @property
  def agree(self) -> int:
    """How many of the 3 pairs share the sign of the direction."""
    return int(np.sum(_signs(self.u) == _SIGN[self.direction]))

  def to_json(self) -> dict:
    return {'clip': self.clip, 'frames': self.frames,
            'size': list(self.size), 'u': [float(x) for x in self.u],
            'v': [float(x) for x in self.v], 'rule': self.rule,
            'direction': self.direction,
            'reversed_direction': self.reversed_direction,
            'opposite': self.opposite}


_SIGN = {'+': 1, '-': -1, '0': 0}


class NonFiniteScoreError(RuntimeError):
  """H scored a clip NaN/inf; str() names the clip and the checkpoint."""


def check_finite(clip: str, u, v, checkpoint: str, step: int) -> None:
  """NonFiniteScoreError naming `clip` and `checkpoint` unless u, v finite."""
  scores = np.concatenate([np.ravel(u), np.ravel(v)])
  if np.isfinite(scores).all():
    return
  fmt = lambda x: '[' + ', '.join(f'{float(a):.6g}' for a in np.ravel(x)) + ']'
  raise NonFiniteScoreError(
      f'{clip}: H scores are not finite (u={fmt(u)}, v={fmt(v)}; checkpoint '
      f'{checkpoint}, step {step}); no direction for this clip')


def _signs(x) -> np.ndarray:
  return np.sign(np.asarray(x, np.float64)).astype(int)


def side(scores, rule: str = 'first') -> str:
  """'+', '-' or '0' for scores f32[3] of pairs (0,6),(1,5),(2,4).

  first: the sign of scores[0]; majority: the sign of the sum of the signs.
  """
  if rule not in RULES:
    raise ValueError(f'rule={rule!r}; known: {RULES}')
  if not np.isfinite(np.asarray(scores, np.float64)).all():
    raise ValueError(f'scores {list(np.ravel(scores))} are not all finite')
  s = _signs(scores)
  value = s[0] if rule == 'first' else np.sign(s.sum())
  return {1: '+', -1: '-', 0: '0'}[int(value)]


def find_clips(spec: str) -> tuple[list[tuple[str, list[str]]], bool]:
  """--frames -> ([(clip name, frame files)], is_multi).

  A directory with files is one clip (its non-hidden files, sorted); a
  directory with only sub-directories is several clips; a glob matching
  files is one clip, matching directories several.
  """
  spec = os.path.expanduser(os.fspath(spec))
  if os.path.isdir(spec):
    files = _clip_files(spec)
    if files:
      return [(spec, files)], False
    subdirs = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                     if not n.startswith('.')
                     and os.path.isdir(os.path.join(spec, n)))
    if not subdirs:
      raise FileNotFoundError(f'{spec}: no frames and no clip directories')
    return [(d, _clip_files(d)) for d in subdirs], True
  if imageio.is_glob(spec):
    matches = sorted(glob.glob(spec))
    files = [m for m in matches if os.path.isfile(m)]
    dirs = [m for m in matches if os.path.isdir(m)]
    if files and dirs:
      raise ValueError(f'{spec}: glob matches both files and directories')
    if files:
      return [(spec, files)], False
    if dirs:
      return [(d, _clip_files(d)) for d in dirs], True
    raise FileNotFoundError(f'{spec}: glob matches nothing')
  if os.path.isfile(spec):
    raise ValueError(f'{spec}: is a file; --frames needs a directory of '
                     f'{N_FRAMES} frames, a glob, or a directory of clips')
  raise FileNotFoundError(f'{spec}: no such file or directory')


def _clip_files(directory: str) -> list[str]:
  return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                if not n.startswith('.')
                and os.path.isfile(os.path.join(directory, n)))


def read_clip(clip: str, files: list[str], min_side: int) -> np.ndarray:
  """The clip's frames as f32[7,H,W,3] in [0,1]; ValueError naming it."""
  if len(files) != N_FRAMES:
    names = ', '.join(os.path.basename(f) for f in files[:10])
    more = ', ...' if len(files) > 10 else ''
    raise ValueError(f'{clip}: expected {N_FRAMES} frames, found '
                     f'{len(files)} file(s) ({names}{more})')
  frames = [imageio.read_image(f) for f in files]
  sizes = sorted({f.shape[:2] for f in frames})
  if len(sizes) != 1:
    raise ValueError(f'{clip}: frames differ in size {sizes}; all '
                     f'{N_FRAMES} must have one size')
  h, w = sizes[0]
  if min(h, w) < min_side:
    raise ValueError(f'{clip}: frames are {h}x{w} px; H needs at least '
                     f'{min_side} px a side')
  return np.stack(frames)


def make_score_fn(loaded):
  """jitted fn(params, hyperplane, frames f32[B,7,H,W,3]) -> (u, v) f32[B,3]."""
  import jax  # pylint: disable=g-import-not-at-top
  model = loaded.model
  return jax.jit(lambda params, w, frames: ordering.pair_scores(
      model, params, w, frames))


def run(checkpoint: str, frames: str, *, rule: str = 'first',
        on_result=None) -> tuple[list[ClipResult], dict]:
  """Scores every clip; returns (results, {clip: one-line failure}).

  on_result(ClipResult) is called as each clip finishes. A single clip that
  fails raises (ValueError / FileNotFoundError naming it); NaN/inf scores
  raise NonFiniteScoreError for any run.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from hypercut_jax import inference  # pylint: disable=g-import-not-at-top
  if rule not in RULES:
    raise ValueError(f'--rule={rule!r}; known: {RULES}')
  clips, multi = find_clips(frames)
  loaded = inference.load_ordering(checkpoint)
  score = make_score_fn(loaded)
  lo = ordering.min_side(loaded.model.n_down)
  results, failed = [], {}
  for clip, files in clips:
    try:
      x = read_clip(clip, files, lo)
    except (ValueError, FileNotFoundError) as e:
      if not multi:
        raise
      failed[clip] = str(e)
      continue
    u, v = jax.device_get(score(loaded.params, loaded.hyperplane, x[None]))
    check_finite(clip, u, v, checkpoint, loaded.step)
    result = ClipResult(clip=clip, frames=[os.path.basename(f) for f in files],
                        size=x.shape[1:3], u=np.asarray(u[0]),
                        v=np.asarray(v[0]), rule=rule)
    results.append(result)
    if on_result is not None:
      on_result(result)
  return results, failed


def format_text(r: ClipResult) -> str:
  """The human-readable block of one clip."""
  lines = [f'clip {r.clip}: {N_FRAMES} frames {r.size[0]}x{r.size[1]} '
           f'({r.frames[0]} .. {r.frames[-1]})',
           '  pair    u_k = s(x_k, x_6-k)   v_k = s(x_6-k, x_k)   opposite']
  for k, (a, b) in enumerate(PAIRS):
    opp = 'yes' if r.u[k] * r.v[k] < 0 else 'no'
    lines.append(f'  ({a},{b})   {r.u[k]:+18.6g}   {r.v[k]:+18.6g}   {opp}')
  how = ('sign of u_0' if r.rule == 'first' else 'majority of u_0..u_2')
  lines.append(f'  direction: {r.direction} ({how}; {r.agree}/3 pairs '
               'agree)')
  lines.append(f'  reversed clip: {r.reversed_direction} -> opposite: '
               f'{"yes" if r.opposite else "no"}')
  return '\n'.join(lines)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m hypercut_jax.order',
      description='Score the frame pairs of clip(s) with a trained H.')
  p.add_argument('--checkpoint', required=True,
                 help='stage-1 workdir / checkpoints dir / converted dir')
  p.add_argument('--frames', required=True,
                 help='clip dir (7 frames), quoted glob, or dir of clip dirs')
  p.add_argument('--rule', default='first', choices=RULES,
                 help='direction from the sign of u_0 (first, official) or '
                 'the majority of the 3 pairs')
  p.add_argument('--format', default='text', choices=('text', 'json'))
  return p


def main(argv=None) -> int:
  """CLI entry point; returns the exit status (see module docstring)."""
  args = _parser().parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # orbax's read-only notices

  def emit(result):
    if args.format == 'json':
      print(json.dumps(result.to_json()), flush=True)
    else:
      print(format_text(result), flush=True)

  try:
    results, failed = run(args.checkpoint, args.frames, rule=args.rule,
                          on_result=emit)
  except (ValueError, OSError, RuntimeError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    return 1
  if args.format == 'text' and len(results) > 1:
    n_opp = sum(r.opposite for r in results)
    print(f'{len(results)} clips: reversed clip opposite in {n_opp}/'
          f'{len(results)}')
  if failed:
    print(f'{len(failed)} clip(s) failed:', file=sys.stderr)
    for reason in failed.values():
      print(f'  {reason}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
