"""Imported first by ``kdlic``: CompressAI's import calls ``torch.jit.script``, deprecated
in recent torch, and the FutureWarning is noise for every kdlic user and command."""

import warnings

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
