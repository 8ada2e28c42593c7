# A firmware update that a power cut interrupted is finished or rolled back before the
# application's modules load (they may be the files being replaced). On a board that runs the
# package from a ROMFS image, a new image staged by an update goes to the partition first, before
# anything runs from /rom; and again after resume_install, which may just have renamed it into
# place. romfs_update mounts the new image at /rom once it is written.
try:
    import romfs_update
except ImportError:   # an update from a release without it, cut before it was renamed into place
    romfs_update = None
if romfs_update:
    romfs_update.install("/")
from evse.ocpp import fwboot  # noqa: E402

fwboot.resume_install("/")
del fwboot
if romfs_update:
    romfs_update.install("/")
del romfs_update
import evse  # noqa: E402

evse.unload(*evse.UPDATE_MODULES)   # ~20 KB of heap on a board, until the next update
evse.unload("romfs_update")

import evse.app  # noqa: E402

evse.app.main()
