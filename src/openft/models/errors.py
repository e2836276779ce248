"""The one error of the model store: a source that cannot be added, or a name that cannot be
used or removed. Its message is one line that says what to do; the CLI prints it as is."""


class ModelStoreError(Exception):
    pass
