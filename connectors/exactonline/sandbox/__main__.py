from connectors.exactonline.sandbox.app import main

main()
