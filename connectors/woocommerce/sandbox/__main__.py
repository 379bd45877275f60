from connectors.woocommerce.sandbox.app import main

main()
