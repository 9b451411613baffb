"""The local page: the bot's own engine answering in a browser, and the HTTP API it uses
(`server`), with its static files (`static/`). Imports the engine and the forms, never
discord.py: it serves with or without a Discord token."""
