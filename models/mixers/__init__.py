"""Registry of sequence mixers: `config.model.mixer` picks one (or a per-layer pattern)."""
from models.mixers.base import MIXERS, Mixer, MixerSpec, register  # noqa: F401

# Each import registers the mixers its file defines.
from models.mixers import attention  # noqa: F401,E402
from models.mixers import linear_attention  # noqa: F401,E402
from models.mixers import momentum_attention  # noqa: F401,E402
from models.mixers import gla  # noqa: F401,E402
from models.mixers import retention  # noqa: F401,E402
from models.mixers import rwkv  # noqa: F401,E402
from models.mixers import mamba  # noqa: F401,E402
from models.mixers import s4d  # noqa: F401,E402
from models.mixers import hyena  # noqa: F401,E402
from models.mixers import rnn  # noqa: F401,E402
from models.mixers import ngram_head  # noqa: F401,E402
