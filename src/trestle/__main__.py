from trestle.cli.app import main

main()
