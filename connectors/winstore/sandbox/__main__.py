from connectors.winstore.sandbox.app import main

main()
