from omnibatch.cli import main

main()
