#!/bin/sh
# coexist-map commands gam: the Google Workspace side of coexist's routing (GAM7 or GAMADV-XTD3)
# batch: wave1; state: migrated and dual; users: 7 (migrated 6, dual 1, source 0); generated: 2027-01-15T08:00:00Z
# migrated: Gmail forwards to the routing address and archives its own copy (kept, out of the
# inbox). dual: Gmail forwards and keeps its copy in the inbox. source: the forward is switched
# off and the forwarding address removed. Each command stands alone: one that fails (a user
# already done) does not stop the others. Review, then run with sh.

# "john doe"@contoso.com: migrated: SKIPPED, a quoted local part ("john doe"@o365.contoso.com) is no Google address

# ann@contoso.com: migrated
gam user 'ann@contoso.com' add forwardingaddress 'ann@o365.contoso.com'
gam user 'ann@contoso.com' forward on archive 'ann@o365.contoso.com'

# bob@contoso.com: dual
gam user 'bob@contoso.com' add forwardingaddress 'bob@o365.contoso.com'
gam user 'bob@contoso.com' forward on keep 'bob@o365.contoso.com'

# jsmith@contoso.com: migrated
gam user 'jsmith@contoso.com' add forwardingaddress 'j.smith@contoso.onmicrosoft.com'
gam user 'jsmith@contoso.com' forward on archive 'j.smith@contoso.onmicrosoft.com'

# kim@fabrikam.com: migrated
gam user 'kim@fabrikam.com' add forwardingaddress 'kim@fabrikam.onmicrosoft.com'
gam user 'kim@fabrikam.com' forward on archive 'kim@fabrikam.onmicrosoft.com'

# o'brien$home`id`|x&y@contoso.com: migrated
gam user 'o'\''brien$home`id`|x&y@contoso.com' add forwardingaddress 'o'\''brien$home`id`|x&y@o365.contoso.com'
gam user 'o'\''brien$home`id`|x&y@contoso.com' forward on archive 'o'\''brien$home`id`|x&y@o365.contoso.com'

# o???neil@contoso.com: migrated
gam user 'o’neil@contoso.com' add forwardingaddress 'o’neil@o365.contoso.com'
gam user 'o’neil@contoso.com' forward on archive 'o’neil@o365.contoso.com'
