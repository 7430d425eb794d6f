"""The steering playground: a local web page over one loaded model (`steerscope serve`).

from steerscope.serve import Playground, create_app, Background
app = create_app(Playground(lm, vectors=Path("vectors"), runs=Path("runs")))
with Background(app) as url:   # or: steerscope serve default
    ...
"""

from .app import create_app
from .plan import Limits
from .playground import Playground
from .server import Background

__all__ = ["Background", "Limits", "Playground", "create_app"]
