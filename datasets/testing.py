"""Helpers for the builder tests: copy dummy data, build, read in a fresh process."""
import json
import os
import pickle
import shutil
import subprocess
import sys

from hypercut_datasets import build as build_lib

_HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in a fresh interpreter: reads prepared datasets through `data_source`
# and reports whether TensorFlow got imported on the way.
_READER = r'''
import json, pickle, sys
import hypercut_datasets
args = json.loads(sys.argv[1])
records = {}
for name, config, split in args['reads']:
  src = hypercut_datasets.data_source(name, split, args['data_dir'], config)
  records[(name, config, split)] = [src[i] for i in range(len(src))]
with open(args['out'], 'wb') as f:
  pickle.dump({'records': records, 'tensorflow_imported': 'tensorflow' in sys.modules}, f)
'''


def dummy_dir(name):
  """`<repo>/datasets/<name>/dummy_data`."""
  return os.path.join(_HERE, name, 'dummy_data')


def copy_dummy(name, dst):
  """Copies the dummy data of `name` to `dst` (a new folder) and returns `dst`."""
  shutil.copytree(dummy_dir(name), dst)
  return os.fspath(dst)


def build(name, manual_dir, data_dir, config=None):
  """Builds into `data_dir`; returns the prepared version folder."""
  return build_lib.build(name, manual_dir=manual_dir, data_dir=data_dir, config=config)


def read_in_fresh_process(data_dir, reads, tmp_dir):
  """Reads every `(name, config, split)` in `reads` in a new Python process.

  Returns:
    {'records': {(name, config, split): [record dicts]}, 'tensorflow_imported': bool}
  """
  out = os.path.join(os.fspath(tmp_dir), 'records.pkl')
  args = json.dumps({'data_dir': os.fspath(data_dir), 'reads': [list(r) for r in reads],
                     'out': out})
  proc = subprocess.run([sys.executable, '-c', _READER, args], capture_output=True, text=True,
                        timeout=300, check=False)
  if proc.returncode:
    raise RuntimeError(f'reader process failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
  with open(out, 'rb') as f:
    return pickle.load(f)
