import sys

from whatsapp_operator.cli import main

sys.exit(main())
