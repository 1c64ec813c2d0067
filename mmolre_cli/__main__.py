from mmolre_cli.cli.app import main

main()
