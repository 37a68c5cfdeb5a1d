from embed.cli import app

app(prog_name="embed")
