# A firmware update that a power cut interrupted is finished or rolled back before the
# application's modules load (they may be the files being replaced).
from evse.ocpp import fw

fw.resume_install("/")
del fw

import evse.app  # noqa: E402

evse.app.main()
