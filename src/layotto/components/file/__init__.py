"""File stores (Layotto's File API: GetFile/PutFile/ListFile/DelFile/GetFileMeta)."""

FACTORIES: dict[str, str] = {
    "local": "layotto.components.file.local:LocalFileStore",
}
