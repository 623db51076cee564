"""The client is a client: importing it loads the codec, the protocol and the
error registry, and no storage engine or server module."""

import subprocess
import sys

SERVER_MODULES = ("shm.partition_log", "shm.segment", "shm.index", "shm.reader",
                  "shm.control_block", "shm.shared_map", "shm.files", "workers")


def test_importing_the_client_loads_no_storage_or_server_module():
    code = ("import sys, appliance.client; "
            "print('\\n'.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('appliance', 'shm', 'workers'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.split()
    assert "appliance.client" in loaded and "shm.records" in loaded  # the check can see
    server = [m for m in loaded if m.startswith(SERVER_MODULES)
              or (m.startswith("appliance.") and not m.startswith(
                  ("appliance.client", "appliance.protocol", "appliance.partitioner")))]
    assert server == []
