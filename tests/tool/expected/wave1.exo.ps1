# coexist-map commands exo: the Exchange Online side of coexist's routing (PowerShell)
# batch: wave1; state: migrated and dual; users: 7 (migrated 6, dual 1, source 0); generated: 2027-01-15T08:00:00Z
# Run in Exchange Online PowerShell (after Connect-ExchangeOnline). migrated and dual: the
# mailbox gets the routing address as a secondary (smtp:) proxy address, so mail Google
# forwards there is delivered to it; the user needs its mailbox (a license) first. source: the
# routing address is removed again. Each line stands alone: one that fails does not stop the
# others. Review, then run.

# "john doe"@contoso.com: migrated
Set-Mailbox -Identity '"john doe"@contoso.com' -EmailAddresses @{Add='smtp:"john doe"@o365.contoso.com'}

# ann@contoso.com: migrated
Set-Mailbox -Identity 'ann@contoso.com' -EmailAddresses @{Add='smtp:ann@o365.contoso.com'}

# bob@contoso.com: dual
Set-Mailbox -Identity 'bob@contoso.com' -EmailAddresses @{Add='smtp:bob@o365.contoso.com'}

# jsmith@contoso.com: migrated
Set-Mailbox -Identity 'jsmith@contoso.com' -EmailAddresses @{Add='smtp:j.smith@contoso.onmicrosoft.com'}

# kim@fabrikam.com: migrated
Set-Mailbox -Identity 'kim@fabrikam.com' -EmailAddresses @{Add='smtp:kim@fabrikam.onmicrosoft.com'}

# o'brien$home`id`|x&y@contoso.com: migrated
Set-Mailbox -Identity 'o''brien$home`id`|x&y@contoso.com' -EmailAddresses @{Add='smtp:o''brien$home`id`|x&y@o365.contoso.com'}

# o???neil@contoso.com: migrated
Set-Mailbox -Identity 'o’’neil@contoso.com' -EmailAddresses @{Add='smtp:o’’neil@o365.contoso.com'}
