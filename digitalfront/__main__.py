from digitalfront.cli import cli

cli()
