"""Bearer-token authentication of the service's write and admin routes.

The token comes from the environment variable ``RECFORGE_API_TOKEN``, else from the file
named by ``[auth] token_file`` (its content, surrounding whitespace removed). A request
passes when its ``Authorization: Bearer <token>`` header carries it; the comparison is
constant-time (`hmac.compare_digest` over the UTF-8 bytes). Without any token configured,
the protected routes refuse every request: the service never runs open for writes. The
token is never logged, printed or put in an error message.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from recforge.errors import InputError

TOKEN_ENV = "RECFORGE_API_TOKEN"
#: the shortest token accepted
MIN_TOKEN_LENGTH = 16


class TokenAuth:
    """Checks ``Authorization`` headers against one configured token (module docstring)."""

    def __init__(self, token: str | None):
        self._token = None if token is None else token.encode("utf-8")

    @classmethod
    def from_settings(cls, token_file: str | Path | None) -> TokenAuth:
        """The token of ``RECFORGE_API_TOKEN``, else of ``token_file``, else none (every
        protected request refused). A token shorter than 16 characters or holding
        whitespace is refused (`InputError`, without the token in the message)."""
        token = os.environ.get(TOKEN_ENV)
        source = TOKEN_ENV
        if not token and token_file is not None:
            path = Path(token_file)
            if not path.is_file():
                raise InputError(f"auth.token_file {path}: no such file")
            token, source = path.read_text(encoding="utf-8").strip(), str(path)
        if not token:
            return cls(None)
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise InputError(f"the API token from {source} must be at least {MIN_TOKEN_LENGTH} "
                             "characters without whitespace")
        return cls(token)

    @property
    def configured(self) -> bool:
        """Whether a token is set (else protected routes refuse everyone)."""
        return self._token is not None

    def check(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header value carries the token."""
        if self._token is None or not authorization:
            return False
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)

    def __repr__(self) -> str:
        return f"TokenAuth(configured={self.configured})"
