from a3s_dev.entry import main

main()
