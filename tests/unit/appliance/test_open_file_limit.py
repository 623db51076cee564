"""The supervisor raises its soft open-file limit to the hard one at start-up."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

CHILD = """
import resource
from appliance.supervisor import raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
raised = raise_open_file_limit()
print(raised, *resource.getrlimit(resource.RLIMIT_NOFILE), hard)
"""


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    raised, soft, hard, original_hard = (int(x) for x in done.stdout.split())
    assert soft == hard == raised == original_hard
    assert hard > 256 or hard == resource.RLIM_INFINITY
