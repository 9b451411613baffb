"""The Discord side: the client (`client`), one file per command group (`poem_command`,
`settings_command`, `model_command`), replies, who may run what (`authority`)
and the answers in flight at shutdown (`gate`). The only code in the project that imports
discord.py; it reaches the engine, the stores and the job runner only through what the
composition root hands it."""
