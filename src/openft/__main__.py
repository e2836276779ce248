from openft.cli.app import main

main()
