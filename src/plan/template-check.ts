// Over 300 lines: one visitor class over one AST, whose methods share the frame and the statement being checked.
/**
 * The strict check of a template in its scope: every helper, variable and partial must exist where the
 * template is rendered, blocks get what they need, nothing prints a list or an object, and the syntax
 * is sound. Each problem has the template's line (or a partial's file and line) and a hint.
 */
import {didYouMean} from '../core/diagnostics.js'
import {checkRefCall, REF_HELPERS} from './template-refs.js'
import {ANY, type Frame, list, Names, NODE_VIEW, type Shape, VALUE} from './template-scope.js'
import {
  type AstNode,
  callText,
  exprText,
  parseTemplate,
  simpleName,
  TEMPLATE_HINT,
  TemplateError,
} from './template-syntax.js'

const BLOCK_HELPERS = ['if', 'unless', 'each', 'with']
const BUILTIN_HELPERS = [...BLOCK_HELPERS, 'lookup']
const ALL_HELPERS: string[] = [...REF_HELPERS, ...BUILTIN_HELPERS]

export interface TemplateProblem {
  message: string
  hint?: string
  /** Line within the template, or within `file` for a problem in a partial. */
  line: number
  file?: string
}

export interface PartialSource {
  text: string
  file?: string
}

export interface CheckOptions {
  root: Shape
  /** `{{> NAME}}` files; undefined where partials cannot be used (param values, node_name). */
  partials?: Record<string, PartialSource>
  /** node_name has no other nodes to read: only handlebars' own helpers. */
  helpers?: 'all' | 'builtins'
}

/** Every problem a template has in a scope: unknown helpers, variables and partials, misused blocks, bad syntax. */
export function checkTemplate(template: string, options: CheckOptions): TemplateProblem[] {
  return checkedTemplate(template, options).problems
}

/** checkTemplate, with the AST it checked (none for a text without `{{`, or one that does not parse). */
export function checkedTemplate(template: string, options: CheckOptions): {problems: TemplateProblem[]; ast?: AstNode} {
  if (!template.includes('{{')) return {problems: []}
  let ast: AstNode
  try {
    ast = parseTemplate(template) as AstNode
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error
    return {problems: [{message: error.message, hint: error.hint, line: error.line}]}
  }
  return {problems: checkParsed(ast, options), ast}
}

/** The problems of a parsed template (checkTemplate without the parsing). */
export function checkParsed(ast: AstNode, options: CheckOptions): TemplateProblem[] {
  const checker = new Checker(options)
  checker.program(ast, {contexts: [options.root], blockParams: [], inEach: false, partials: []})
  return checker.problems
}

class Checker {
  readonly problems: TemplateProblem[] = []
  /** The statement being checked (`{{`, `{{#`… and its node): written out as the start of a message, only when there is one. */
  private statementOpen = ''
  private statementNode?: AstNode

  private readonly names: Names

  constructor(private readonly options: CheckOptions) {
    this.names = new Names(options.root, this.helpers(), (node, frame, message, hint) =>
      this.problem(node, frame, message, hint),
    )
  }

  private problem(node: AstNode, frame: Frame, message: string, hint?: string): void {
    const statement = this.statementNode ? `${this.statementOpen}${callText(this.statementNode)}}}` : ''
    this.problems.push({
      message: `${statement}: ${message}`,
      hint,
      line: node.loc?.start.line ?? 1,
      file: frame.file,
    })
  }

  private helpers(): string[] {
    return this.options.helpers === 'builtins' ? BUILTIN_HELPERS : ALL_HELPERS
  }

  program(program: {body?: AstNode[]} | undefined, frame: Frame): void {
    for (const node of program?.body ?? []) this.visit(node, frame)
  }

  private visit(node: AstNode, frame: Frame): void {
    switch (node.type) {
      case 'MustacheStatement': {
        this.statementIs('{{', node)
        this.printable(node, this.call(node, frame), frame)
        return
      }
      case 'BlockStatement':
        this.statementIs('{{#', node)
        return this.block(node, frame)
      case 'PartialStatement':
        this.statementIs('{{> ', node)
        return this.partial(node, frame)
      case 'PartialBlockStatement':
        this.statementIs('{{#> ', node)
        return this.problem(node, frame, 'partial blocks are not supported', 'write {{> NAME}} for the NAME.hbs file')
      case 'DecoratorBlock':
      case 'Decorator':
        this.statementIs('{{* ', node)
        return this.problem(
          node,
          frame,
          'decorators and inline partials are not supported',
          "put the partial in a NAME.hbs file of the service's directory and write {{> NAME}}",
        )
      default:
        return
    }
  }

  private statementIs(open: string, node: AstNode | undefined): void {
    this.statementOpen = open
    this.statementNode = node
  }

  private printable(node: AstNode, shape: Shape, frame: Frame): void {
    const what = exprText(node.path)
    if (shape.kind === 'list')
      this.problem(
        node,
        frame,
        'prints a list',
        `go through it: {{#each ${(node.params ?? []).length ? `(${callText(node)})` : what}}}…{{/each}}`,
      )
    else if (shape.kind === 'object') {
      const fields = Object.keys(shape.fields).slice(0, 5)
      this.problem(
        node,
        frame,
        'prints an object',
        fields.length
          ? `print one of its fields: ${fields.map((f) => `{{${what === 'this' ? f : `${what}.${f}`}}}`).join(', ')}`
          : `print one of its keys: {{${what}.KEY}}`,
      )
    }
  }

  /** A mustache or sub-expression: a helper call, or a variable. */
  private call(node: AstNode, frame: Frame, sub = false): Shape {
    const path = node.path
    if (!path || path.type !== 'PathExpression')
      return (this.problem(node, frame, `${exprText(path)} is not a name`, TEMPLATE_HINT), ANY)
    const name = simpleName(path)
    const hasArgs = (node.params ?? []).length > 0 || (node.hash?.pairs ?? []).length > 0
    if (name !== undefined && this.helpers().includes(name)) return this.helper(name, node, frame, false)
    if (hasArgs || sub) {
      this.unknownHelper(node, name ?? String(path.original), frame)
      for (const p of node.params ?? []) this.expr(p, frame)
      return ANY
    }
    return this.names.resolve(path, frame)
  }

  private unknownHelper(node: AstNode, name: string, frame: Frame): void {
    const guess = didYouMean(name, this.helpers())
    this.problem(
      node,
      frame,
      `unknown helper "${name}"`,
      guess ? `did you mean ${guess}?` : `the helpers are: ${this.helpers().join(', ')}`,
    )
  }

  private helper(name: string, node: AstNode, frame: Frame, block: boolean): Shape {
    if ((node.hash?.pairs ?? []).length > 0) this.problem(node, frame, `${name} takes no name=value arguments`)
    if (BLOCK_HELPERS.includes(name) && !block) {
      this.problem(node, frame, `${name} is a block helper`, `write {{#${name} …}}…{{/${name}}}`)
      return ANY
    }
    if (!BLOCK_HELPERS.includes(name) && block) {
      this.problem(
        node,
        frame,
        `${name} is not a block helper`,
        name === 'nodes'
          ? 'go through the nodes of a role with {{#each (nodes "ROLE")}}…{{/each}}'
          : `write {{${name} …}}, with no {{/${name}}}`,
      )
      return ANY
    }
    if ((REF_HELPERS as readonly string[]).includes(name)) {
      try {
        checkRefCall(node, name)
      } catch (error) {
        if (!(error instanceof TemplateError)) throw error
        this.problems.push({message: error.message, hint: error.hint, line: error.line, file: frame.file})
        return ANY
      }
      return name === 'nodes' ? list(NODE_VIEW) : VALUE
    }
    const args = (node.params ?? []).map((p) => this.expr(p, frame))
    if (name === 'lookup') {
      if (args.length !== 2) this.problem(node, frame, 'lookup takes two arguments: {{lookup OBJECT "KEY"}}')
      const key = node.params?.[1]
      if (args[0]?.kind === 'object' && key?.type === 'StringLiteral') {
        const found = args[0].fields[String(key.value)] ?? args[0].open
        if (!found) this.names.unknownField(node, frame, args[0], String(key.value), `${exprText(node.params![0])}.`)
        return found ?? ANY
      }
      return ANY
    }
    return VALUE
  }

  private block(node: AstNode, frame: Frame): void {
    const path = node.path!
    const name = path.type === 'PathExpression' ? simpleName(path) : undefined
    const args = node.params ?? []
    const inner = (context: Shape, params: Shape[] = [], each = frame.inEach): Frame => {
      const names = node.program?.blockParams ?? []
      return {
        ...frame,
        contexts: [...frame.contexts, context],
        blockParams: [...frame.blockParams, Object.fromEntries(names.map((n, i) => [n, params[i] ?? VALUE]))],
        inEach: each,
      }
    }
    if (name === undefined || !this.helpers().includes(name)) {
      if (name !== undefined && args.length === 0) {
        this.names.resolve(path, frame)
        this.problem(
          node,
          frame,
          `${name} is not a block helper`,
          `to go through a list write {{#each ${name}}}…{{/each}}; to test a value, {{#if ${name}}}…{{/if}}`,
        )
      } else this.unknownHelper(node, name ?? String(path.original), frame)
      this.program(node.program, inner(ANY))
      this.program(node.inverse, frame)
      return
    }
    if (!BLOCK_HELPERS.includes(name)) {
      this.helper(name, node, frame, true)
      this.program(node.program, inner(ANY))
      this.program(node.inverse, frame)
      return
    }
    if ((node.hash?.pairs ?? []).length > 0) this.problem(node, frame, `${name} takes no name=value arguments`)
    const [open, statement] = [this.statementOpen, this.statementNode]
    const shapes = args.map((a) => this.expr(a, frame))
    if (name === 'if' || name === 'unless') {
      if (args.length !== 1)
        this.problem(node, frame, `${name} needs one value to test`, `e.g. {{#${name} params.port}}…{{/${name}}}`)
      this.program(node.program, frame)
    } else if (name === 'each') {
      let element: Shape = ANY
      if (args.length !== 1)
        this.problem(
          node,
          frame,
          'each needs one list to go through',
          'e.g. {{#each locations}}…{{/each}} or {{#each (nodes "appserver")}}…{{/each}}',
        )
      else if (shapes[0].kind === 'list') element = shapes[0].of
      else if (shapes[0].kind === 'object') element = shapes[0].open ?? ANY
      else if (shapes[0].kind === 'value')
        this.problem(
          node,
          frame,
          `${exprText(args[0])} is a single value, not a list`,
          'go through a list: locations, hostnames or (nodes "ROLE")',
        )
      this.program(node.program, inner(element, [element, VALUE], true))
    } else {
      if (args.length !== 1) this.problem(node, frame, 'with needs one object', 'e.g. {{#with general}}…{{/with}}')
      else if (shapes[0].kind === 'value')
        this.problem(node, frame, `${exprText(args[0])} is a single value, not an object`)
      this.program(node.program, inner(shapes[0] ?? ANY, [shapes[0] ?? ANY]))
    }
    this.statementIs(open, statement)
    this.program(node.inverse, frame)
  }

  private partial(node: AstNode, frame: Frame): void {
    const nameNode = node.name
    if (!nameNode || nameNode.type !== 'PathExpression')
      return this.problem(node, frame, "a partial's name must be written out", 'write {{> NAME}} for the file NAME.hbs')
    const name = String(nameNode.original)
    const partials = this.options.partials
    if (!partials)
      return this.problem(
        node,
        frame,
        'partials are only for the templates of a service',
        "a value cannot include a file; put the text in the service's setup.sh.hbs",
      )
    const found = partials[name]
    if (!found) {
      const names = Object.keys(partials)
      const guess = didYouMean(name, names)
      return this.problem(
        node,
        frame,
        `no partial "${name}"`,
        guess
          ? `did you mean {{> ${guess}}}?`
          : `a partial is another NAME.hbs file of the service's directory (${names.length ? `here: ${names.join(', ')}` : 'it has none'})`,
      )
    }
    if (frame.partials.includes(name))
      return this.problem(
        node,
        frame,
        `partial ${name} includes itself`,
        'a partial cannot include itself, directly or not',
      )
    const args = (node.params ?? []).map((p) => this.expr(p, frame))
    if (args.length > 1) this.problem(node, frame, 'a partial takes at most one context: {{> NAME CONTEXT}}')
    let context = args[0] ?? frame.contexts[frame.contexts.length - 1]
    const pairs = node.hash?.pairs ?? []
    if (pairs.length > 0) {
      const fields = Object.fromEntries(pairs.map((p) => [p.key, this.expr(p.value, frame)]))
      context = context.kind === 'object' ? {...context, fields: {...context.fields, ...fields}} : context
    }
    let ast: AstNode
    try {
      ast = parseTemplate(found.text) as AstNode
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error
      this.problems.push({message: error.message, hint: error.hint, line: error.line, file: found.file})
      return
    }
    const [open, statement] = [this.statementOpen, this.statementNode]
    this.program(ast, {
      contexts: [...frame.contexts.slice(0, -1), context],
      blockParams: [],
      inEach: frame.inEach,
      file: found.file,
      partials: [...frame.partials, name],
    })
    this.statementIs(open, statement)
  }

  private expr(node: AstNode, frame: Frame): Shape {
    if (node.type === 'PathExpression') return this.names.resolve(node, frame)
    if (node.type === 'SubExpression') return this.call(node, frame, true)
    return VALUE
  }
}
