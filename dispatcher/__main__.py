from dispatcher.cli import entry

entry()
