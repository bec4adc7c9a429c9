from jobtail.cli import main

main()
