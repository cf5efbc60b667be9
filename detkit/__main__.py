from detkit.cli.app import main

main()
