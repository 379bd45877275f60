from connectors.squarespace.sandbox.app import main

main()
