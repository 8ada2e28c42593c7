# A firmware update that a power cut interrupted is finished or rolled back before the
# application's modules load (they may be the files being replaced).
from evse.ocpp import fw

fw.resume_install("/")
del fw
import evse  # noqa: E402

evse.unload(*evse.UPDATE_MODULES)   # ~20 KB of heap on a board, until the next update

import evse.app  # noqa: E402

evse.app.main()
