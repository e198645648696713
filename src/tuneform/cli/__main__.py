"""`python -m tuneform.cli`: how backends start the job with the interpreter they run under."""

from tuneform.cli.commands import main

main()
