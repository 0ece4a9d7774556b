from a3s_dev.cli import main

main()
