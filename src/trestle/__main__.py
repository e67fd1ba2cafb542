from trestle.cli.app import entry

entry()
