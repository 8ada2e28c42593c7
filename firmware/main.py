import evse.app

evse.app.main()
