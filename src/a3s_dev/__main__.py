from a3s_dev.fast import main

main()
