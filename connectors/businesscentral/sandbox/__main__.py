from connectors.businesscentral.sandbox import main

main()
