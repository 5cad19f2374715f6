# Proves on a real Windows machine what the tests can only emulate or
# compile (issue 17): install, join, pull, status, leave, and that
# everything join and the installer changed is back as it was.
#
#   powershell -ExecutionPolicy Bypass -File verify-windows.ps1 -Url https://DEVICE:31001 -Token TOKEN
#       [-Image REPO:TAG] [-Case fresh|pretrusted] [-Installer -Pin sha256//PIN]
#
# Run it in an elevated Windows PowerShell 5.1 with edgecr.exe on PATH, or
# with -Installer to install it first through the device's install.ps1
# (which also checks the machine PATH stays REG_EXPAND_SZ). Each run needs
# a fresh token.
#
#   fresh       the CA is not in the LocalMachine Root store before join
#   pretrusted  it is: leave must keep it
#
# -Image pulls REPO:TAG with docker (after restarting Docker Desktop as join
# says); without it, edgecr ls is the pull check. Also checked: the crypt32
# store answers "absent" on a first join (defect 1), the state directory and
# the pending secret have protected ACLs (defect 6), a non-elevated join is
# refused before the token is spent (defect 2: run edgecr join once from a
# normal prompt by hand; this script runs elevated). Exit 0: all passed.
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$Token,
    [string]$Image = '',
    [ValidateSet('fresh', 'pretrusted')][string]$Case = 'fresh',
    [switch]$Installer,
    [string]$Pin = ''
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3
$script:failed = $false
function Ok([string]$m) { Write-Host "ok   $m" }
function Bad([string]$m) { Write-Host "FAIL $m"; $script:failed = $true }

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { throw 'run this elevated (Run as administrator)' }

# The device CA, fetched without trust and checked against the token's pin.
$caPin = $Token.Split('.')[1]
if (-not ('EdgecrVerifyTrustAll' -as [type])) {
    Add-Type -TypeDefinition @'
public static class EdgecrVerifyTrustAll {
    public static bool Any(object s, System.Security.Cryptography.X509Certificates.X509Certificate c,
        System.Security.Cryptography.X509Certificates.X509Chain ch, System.Net.Security.SslPolicyErrors e) { return true; }
}
'@
}
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
[Net.ServicePointManager]::ServerCertificateValidationCallback = [Net.Security.RemoteCertificateValidationCallback][EdgecrVerifyTrustAll]::Any
$pem = (New-Object Net.WebClient).DownloadString("$Url/edgecr/v1/ca")
[Net.ServicePointManager]::ServerCertificateValidationCallback = $null
$b64 = ($pem -replace '-----[A-Z ]+-----', '' -replace '\s', '')
$der = [Convert]::FromBase64String($b64)
$sha = [Security.Cryptography.SHA256]::Create()
$got = -join ($sha.ComputeHash($der) | ForEach-Object { $_.ToString('x2') })
if ($got -ne $caPin) { throw "the device's CA is sha256 $got, the token pins $caPin" }
$ca = New-Object Security.Cryptography.X509Certificates.X509Certificate2(, $der)
$thumb = $ca.Thumbprint

function InRoot { [bool](Get-ChildItem Cert:\LocalMachine\Root | Where-Object Thumbprint -eq $thumb) }
$envKey = 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
function MachinePath {
    $k = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($envKey)
    try { '{0} {1}' -f $k.GetValueKind('Path'), $k.GetValue('Path', '', 'DoNotExpandEnvironmentNames') } finally { $k.Close() }
}
$hosts = Join-Path $env:SystemRoot 'System32\drivers\etc\hosts'
$dockerConfig = Join-Path $env:USERPROFILE '.docker\config.json'
$stateDir = Join-Path $env:ProgramData 'edgecr'
function Snapshot {
    [ordered]@{
        hosts        = (Get-FileHash -LiteralPath $hosts).Hash
        root         = InRoot
        dockerConfig = if (Test-Path -LiteralPath $dockerConfig) { (Get-FileHash -LiteralPath $dockerConfig).Hash } else { 'none' }
        certsd       = @(Get-ChildItem -Recurse -ErrorAction SilentlyContinue (Join-Path $env:ProgramData 'docker\certs.d') | ForEach-Object FullName) -join ';'
        state        = Test-Path -LiteralPath (Join-Path $stateDir 'state.json')
        credentials  = Test-Path -LiteralPath (Join-Path $env:APPDATA 'edgecr\credentials.json')
    }
}
function Compare-Snapshot($a, $b, [string]$what) {
    $same = $true
    foreach ($k in $a.Keys) { if ("$($a[$k])" -ne "$($b[$k])") { Bad "$what`: $k was $($a[$k]), is $($b[$k])"; $same = $false } }
    if ($same) { Ok $what }
}

$before = Snapshot
$pathBefore = MachinePath

if ($Installer) {
    # Defect 7: the PATH stays REG_EXPAND_SZ with %VAR% entries unexpanded.
    if (-not $Pin) { throw '-Installer needs -Pin sha256//... (from edgecrd token create --print-join-command)' }
    $installScript = (New-Object Net.WebClient).DownloadString("$Url/install.ps1")
    Write-Host 'Installing with install.ps1 (it joins too).'
    & ([scriptblock]::Create($installScript)) -Token $Token -Url $Url -Pin $Pin
    $pathAfter = MachinePath
    if ($pathAfter.StartsWith('ExpandString ') -and ($pathAfter.Contains('%SystemRoot%') -eq $pathBefore.Contains('%SystemRoot%'))) {
        Ok "machine PATH kept REG_EXPAND_SZ and its %VAR% entries: $pathAfter"
    }
    else { Bad "machine PATH was '$pathBefore', is '$pathAfter'" }
    # Upgrading while the helper runs: it blocks reading stdin, which stays
    # open until we close it. The second install joins "already joined".
    $psi = New-Object Diagnostics.ProcessStartInfo((Join-Path $env:ProgramFiles 'edgecr\docker-credential-edgecr.exe'), 'get')
    $psi.UseShellExecute = $false; $psi.RedirectStandardInput = $true
    $helper = [Diagnostics.Process]::Start($psi)
    try {
        & ([scriptblock]::Create($installScript)) -Token $Token -Url $Url -Pin $Pin
        Ok 'install.ps1 upgraded in place while the helper ran'
    }
    catch { Bad "install.ps1 while the helper ran: $($_.Exception.Message)" }
    finally { $helper.StandardInput.Close(); $helper.WaitForExit(5000) | Out-Null }
}
else {
    if ($Case -eq 'pretrusted') {
        $caFile = Join-Path $env:TEMP 'edgecr-verify-ca.cer'
        [IO.File]::WriteAllBytes($caFile, $der)
        Import-Certificate -CertStoreLocation Cert:\LocalMachine\Root -FilePath $caFile | Out-Null
        Remove-Item -LiteralPath $caFile
        if (InRoot) { Ok 'setup: the CA is in the Root store before join' } else { Bad 'setup: importing the CA' }
        $before = Snapshot
    }
    else {
        if (-not (InRoot)) { Ok 'the CA is absent before join' } else { Bad 'the CA is already in the Root store: use -Case pretrusted' }
    }
    & edgecr.exe join $Url --token $Token
    if ($LASTEXITCODE -eq 0) { Ok 'join' } else { Bad "join (exit $LASTEXITCODE)" }
}

if (InRoot) { Ok 'the CA is in the LocalMachine Root store' } else { Bad 'the CA is not in the LocalMachine Root store' }
$acl = Get-Acl -LiteralPath $stateDir
if ($acl.AreAccessRulesProtected) { Ok "$stateDir has a protected ACL" } else { Bad "$stateDir inherits its ACL" }
foreach ($r in $acl.Access) {
    if ($r.IdentityReference -match 'Users$' -and ($r.FileSystemRights -band [Security.AccessControl.FileSystemRights]::Write)) { Bad "$stateDir lets $($r.IdentityReference) write" }
}
# A pending secret exists only between the device's answer and the stored
# credential; when one is there, only SYSTEM and Administrators may open it.
# (go test ./agent -run TestStateACLWindows checks the same on any Windows.)
$pending = Join-Path $stateDir 'pending-secrets.json'
if (Test-Path -LiteralPath $pending) {
    $pacl = Get-Acl -LiteralPath $pending
    if ($pacl.AreAccessRulesProtected) { Ok "$pending has a protected ACL" } else { Bad "$pending inherits its ACL" }
    foreach ($r in $pacl.Access) {
        if ($r.IdentityReference -notmatch '(SYSTEM|Administrators)$') { Bad "$pending grants $($r.IdentityReference)" }
    }
}
$statusJSON = (& edgecr.exe status -o json) -join "`n"
$statusExit = $LASTEXITCODE
# Windows PowerShell 5.1 emits a JSON array as one object: unroll it.
$status = @($statusJSON | ConvertFrom-Json | ForEach-Object { $_ })
if ($statusExit -eq 0) { Ok 'edgecr status: every hop' } else { Bad 'edgecr status reports a broken hop'; & edgecr.exe status }
$reg = $status[0].registry
if ($Image) {
    & docker pull "$reg/$Image"
    if ($LASTEXITCODE -eq 0) { Ok "docker pull $reg/$Image" } else { Bad "docker pull $reg/$Image (restarted Docker Desktop as join said?)" }
}
else {
    & edgecr.exe ls | Out-Null
    if ($LASTEXITCODE -eq 0) { Ok 'edgecr ls (TLS with the Root store, the credential helper)' } else { Bad 'edgecr ls' }
}

& edgecr.exe leave
if ($LASTEXITCODE -eq 0) { Ok 'leave' } else { Bad "leave (exit $LASTEXITCODE)" }
if ($Case -eq 'pretrusted') {
    if (InRoot) { Ok 'leave kept the CA trusted before join' } else { Bad 'leave removed a CA the user trusted' }
}
Compare-Snapshot $before (Snapshot) 'everything join changed is back'
if ($Case -eq 'pretrusted') { Get-ChildItem Cert:\LocalMachine\Root | Where-Object Thumbprint -eq $thumb | Remove-Item }
if ($Installer) { Write-Host "(install.ps1 left $env:ProgramFiles\edgecr and its PATH entry: remove them by hand if wanted)" }
if ($script:failed) { exit 1 }
