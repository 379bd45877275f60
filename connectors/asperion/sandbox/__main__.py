from connectors.asperion.sandbox.app import main

main()
