"""The `memory` example function in Python."""

import handlers
from serve import serve

IncomingHandler = serve(handlers.memory)
