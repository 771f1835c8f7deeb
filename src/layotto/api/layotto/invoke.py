from __future__ import annotations

from layotto.api.layotto.base import ApiBase


class InvokeApi(ApiBase):
    """Not built yet: its RPCs answer UNIMPLEMENTED."""
