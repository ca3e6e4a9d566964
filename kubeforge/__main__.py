from kubeforge.cli.app import main

main()
