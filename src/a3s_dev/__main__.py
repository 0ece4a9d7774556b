from a3s_dev.cli.main import main

main()
