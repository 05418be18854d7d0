from cnnspec.cli import main

main()
