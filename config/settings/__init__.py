"""One settings package, by topic. Each module reads its own environment variables;
the README's configuration table lists them all."""
from .base import *  # noqa: F401,F403
from .database import *  # noqa: F401,F403
from .redis import *  # noqa: F401,F403
from .celery import *  # noqa: F401,F403
from .channels import *  # noqa: F401,F403
from .storage import *  # noqa: F401,F403
from .gpu import *  # noqa: F401,F403
from .notifications import *  # noqa: F401,F403
from .api import *  # noqa: F401,F403
from .billing import *  # noqa: F401,F403
from .artifacts import *  # noqa: F401,F403
from .dashboard import *  # noqa: F401,F403
from .finetuning import *  # noqa: F401,F403
from .validation import *  # noqa: F401,F403
from .security import *  # noqa: F401,F403
from .serving import *  # noqa: F401,F403
