from shardproxy.cli import app

app(prog_name="shardproxy")
