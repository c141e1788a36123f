"""kubegate: brokered Kubernetes access. This package is the light shared layer that the
exchanger (server), the sidecar (pipeline side) and the `kubegate` command all use.

Rules of this package:
- it imports neither `exchanger` (except the generated wire contract `exchanger.v1`, in the
  exchange client) nor `sidecar`; `kubegate.commands` loads either side lazily;
- its modules import little at import time, so `kubegate credential` stays fast.
"""

__version__ = "0.1.0"
