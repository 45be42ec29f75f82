import {spawnSync} from 'node:child_process'
import * as Args from '@oclif/core/args'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {sshArgv, targetNodes} from '../operations/remote.js'

export default class Ssh extends NodesetCommand {
  static summary = 'Open a shell on a node, or run one command there, over OpenSSH with its host key verified.'
  static description = `Runs your own ssh, so ~/.ssh/config applies as usual (ProxyJump through a bastion, agent, User for static servers). The node's host key must be the one nodeset trusts for it: for nodes nodeset created, the key each reported when it phoned home (pinned in .nodeset/<deployment>/known_hosts); for static servers, that file or ~/.ssh/known_hosts. An unknown or changed key is refused, never accepted on first use. The exit code is the remote command's.`
  static examples = [
    '<%= config.bin %> ssh examples/local.conf app1.nodeset.test',
    '<%= config.bin %> ssh examples/local.conf mysql.nodeset.test -- systemctl status mariadb',
  ]
  static strict = false
  static flags = deploymentFlags
  static args = {
    file: fileArg,
    node: Args.string({description: 'The node (its name, or a role with one node).', required: true}),
    command: Args.string({description: 'After --: a command to run instead of a shell.'}),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(Ssh)
    const dep = this.openDeployment(args.file, flags)
    const [node, ...others] = await targetNodes(dep, [args.node])
    if (others.length) this.error(`${args.node} has ${others.length + 1} nodes: name one of them`, {exit: 2})
    const command = (argv as string[]).slice(2)
    const ssh = spawnSync('ssh', await sshArgv(dep, node, command, process.stdin.isTTY === true), {stdio: 'inherit'})
    if (ssh.error) this.error(`cannot run ssh: ${ssh.error.message} (install openssh-client)`, {exit: 1})
    this.exit(ssh.status ?? 1)
  }
}
