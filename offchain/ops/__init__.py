"""The operator's and trader's side of the CLI: deployment signers, funds checks, the development
venue, the trader population on a live chain, and the account and deployment views."""
