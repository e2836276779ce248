"""One error type for everything a client is told went wrong, rendered as OpenAI's error body."""


class OpenFTError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict:
        message, param = _encodable(self.message), self.param and _encodable(self.param)
        return {"error": {"message": message, "type": self.type, "param": param, "code": self.code}}


def _encodable(text: str) -> str:
    """`text` as UTF-8 can encode it: a lone surrogate a client sent, quoted back in a message or
    a parameter's path, is escaped (else rendering the error itself would fail)."""
    return text.encode("utf-8", "backslashreplace").decode()


def not_found(kind: str, object_id: str, param: str = "id", code: str | None = None) -> OpenFTError:
    return OpenFTError(404, f"No such {kind} object: {object_id}", param=param, code=code)


def model_not_found(model: str) -> OpenFTError:
    return OpenFTError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def job_not_found(job_id: str) -> OpenFTError:
    return OpenFTError(404, f"Could not find fine tune: {job_id}", param="fine_tune_id", code="fine_tune_not_found")


def invalid_api_key(key: str) -> OpenFTError:
    masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else "***"
    return OpenFTError(
        401,
        f"Incorrect API key provided: {masked}. You can find your API key in the openft settings.",
        code="invalid_api_key",
    )


def missing_api_key() -> OpenFTError:
    # OpenAI's wording; its `code` is null.
    return OpenFTError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )


def file_too_large(limit: int) -> OpenFTError:
    return OpenFTError(
        413,
        f"The file is larger than {limit} bytes ({limit / 2**20:g} MiB), the most this server accepts. "
        "Its OPENFT_MAX_UPLOAD_BYTES setting raises the limit.",
        param="file",
        code="file_too_large",
    )
