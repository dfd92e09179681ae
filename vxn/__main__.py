from vxn.cli.main import main

main()
