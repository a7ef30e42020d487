"""`simko_jax.main` on a "full disk": every checkpoint file write of step $SIMKO_ENOSPC_STEP fails.

    SIMKO_ENOSPC_STEP=3 python -m tests.faults.enospc_main --config configs/tiny_random.py ...

Orbax writes each step's JSON items and metadata through `etils.epath.Path.write_text` (array chunks go
through TensorStore, in C++); making those writes raise OSError(ENOSPC) for paths inside the step's
temporary directory fails that save exactly as a full disk would, in Orbax's background thread.
"""

import errno
import os

from etils import epath

_STEP_DIR = f"/{os.environ['SIMKO_ENOSPC_STEP']}.orbax-checkpoint-tmp"
_write_text = epath.Path.write_text


def _full_disk_write_text(self, *args, **kwargs):
  if _STEP_DIR in str(self):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
  return _write_text(self, *args, **kwargs)


epath.Path.write_text = _full_disk_write_text

if __name__ == "__main__":
  from simko_jax.main import entry
  entry()
